//! Serving one instance's guest socket: an accept loop on its listener,
//! one HTTP/1.1 connection task per caller (bounded in number and in
//! time), each checked once at accept against the instance's processes
//! (`peer`) and answered from the engine's current view of that instance
//! (`view`), or turned into an event stream (`events`). Aborting the loop
//! ends every connection and event stream with it.

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::api::Reply;
use super::events;
use super::peer::Owner;
use crate::Engine;

/// Connections served at once per instance; more are closed at accept.
const MAX_CONNECTIONS: usize = 32;
/// Event streams open at once per instance; more get 503.
const MAX_EVENT_STREAMS: usize = 8;
/// A caller must send its request head within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection's whole life (keep-alive included; an event stream, once
/// upgraded, lives until the guest or the instance goes).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// What a connection needs to answer: the engine (weakly: the socket does
/// not keep a closed engine alive), the instance and its processes.
#[derive(Clone)]
pub(super) struct Target {
    pub engine: Weak<Engine>,
    pub name: String,
    pub owner: Owner,
}

/// One accepted connection's context.
#[derive(Clone)]
struct Conn {
    target: Target,
    allowed: bool,
    /// Ends (its sender dropped) when the accept loop is aborted.
    stopped: watch::Receiver<()>,
    event_slots: Arc<Semaphore>,
}

pub(super) async fn accept_loop(listener: UnixListener, target: Target) {
    let mut conns = JoinSet::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let event_slots = Arc::new(Semaphore::new(MAX_EVENT_STREAMS));
    let (_stop, stopped) = watch::channel(());
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(instance = %target.name, "guest API accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(instance = %target.name, "guest API: too many connections; closing one");
            continue;
        };
        let pid = stream.peer_cred().ok().and_then(|c| c.pid());
        let allowed = pid.is_some_and(|p| target.owner.owns(p));
        if !allowed {
            tracing::warn!(instance = %target.name, ?pid, "guest API: a process outside the instance was refused");
        }
        let conn = Conn {
            target: target.clone(),
            allowed,
            stopped: stopped.clone(),
            event_slots: event_slots.clone(),
        };
        conns.spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, serve_conn(stream, conn)).await;
        });
    }
}

async fn serve_conn(stream: UnixStream, conn: Conn) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(respond(&conn, req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = served.await {
        tracing::debug!("guest API connection: {e}");
    }
}

fn reply(r: Reply) -> Response<Full<Bytes>> {
    Response::builder()
        .status(r.status)
        .header("Content-Type", r.content_type)
        .body(Full::new(Bytes::from(r.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn respond(conn: &Conn, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if !conn.allowed {
        return reply(Reply::forbidden());
    }
    let Some(engine) = conn.target.engine.upgrade() else {
        return reply(Reply::error(503, "the daemon is shutting down"));
    };
    if req.method() == hyper::Method::GET && req.uri().path().trim_end_matches('/') == "/1.0/events"
    {
        return events_upgrade(conn, req);
    }
    let r = engine
        .devlxd_answer(&conn.target.name, req.method().as_str(), req.uri().path())
        .await;
    reply(r)
}

/// `GET /1.0/events`: a websocket handshake, then the stream in its own task.
fn events_upgrade(conn: &Conn, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(types) = events::Types::parse(req.uri().query()) else {
        return reply(Reply::error(400, "unknown event type"));
    };
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let upgrade = header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let (true, Some(key)) = (upgrade, header("sec-websocket-key")) else {
        return reply(Reply::error(400, "a websocket upgrade was expected"));
    };
    let Ok(slot) = conn.event_slots.clone().try_acquire_owned() else {
        return reply(Reply::error(503, "too many event streams"));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on = hyper::upgrade::on(&mut req);
    let (engine, name, stopped) = (
        conn.target.engine.clone(),
        conn.target.name.clone(),
        conn.stopped.clone(),
    );
    tokio::spawn(async move {
        if let Ok(up) = on.await {
            events::stream(up, engine, name, types, stopped, slot).await;
        }
    });
    Response::builder()
        .status(101)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", accept)
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
