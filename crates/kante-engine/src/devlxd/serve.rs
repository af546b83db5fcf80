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
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::api::Reply;
use super::events;
use super::export::{self, ExportFiles};
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

type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn reply(r: Reply) -> Response<Body> {
    Response::builder()
        .status(r.status)
        .header("Content-Type", r.content_type)
        .body(full(r.body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

async fn respond(conn: &Conn, req: Request<Incoming>) -> Response<Body> {
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
    if let Some(fp) = export::export_fingerprint(req.uri().path()) {
        if req.method() != hyper::Method::GET {
            return reply(Reply::error(405, "method not allowed"));
        }
        return match engine.devlxd_image_export(&conn.target.name, fp).await {
            Ok(files) => download(files).await,
            Err(r) => reply(r),
        };
    }
    let r = engine
        .devlxd_answer(&conn.target.name, req.method().as_str(), req.uri().path())
        .await;
    reply(r)
}

/// An image's files as one streamed body, framed as `export` says.
async fn download(files: ExportFiles) -> Response<Body> {
    let boundary = uuid::Uuid::new_v4().simple().to_string();
    let (content_type, heads, tail) = files.framing(&boundary);
    let mut len = tail.len() as u64;
    let mut opened = Vec::new();
    for ((_, path), head) in files.parts.iter().zip(heads) {
        let file = match tokio::fs::File::open(path).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("guest API image export: {}: {e}", path.display());
                return reply(Reply::error(500, "internal error"));
            }
        };
        len += head.len() as u64 + file.metadata().await.map(|m| m.len()).unwrap_or(0);
        opened.push((head, file));
    }
    let chunks = futures_util::stream::iter(opened)
        .flat_map(|(head, file)| {
            futures_util::stream::once(async move { Ok(Bytes::from(head)) })
                .chain(file_chunks(file))
        })
        .chain(futures_util::stream::once(
            async move { Ok(Bytes::from(tail)) },
        ))
        .map(|r| r.map(Frame::data));
    let mut builder = Response::builder()
        .status(200)
        .header("Content-Type", content_type)
        .header("Content-Length", len);
    if let [(name, _)] = files.parts.as_slice() {
        builder = builder.header("Content-Disposition", format!("inline;filename={name}"));
    }
    builder
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// A file's bytes, 64 KiB at a time.
fn file_chunks(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    })
}

/// `GET /1.0/events`: a websocket handshake, then the stream in its own task.
fn events_upgrade(conn: &Conn, mut req: Request<Incoming>) -> Response<Body> {
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
        .body(full(Bytes::new()))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}
