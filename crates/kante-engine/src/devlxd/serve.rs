//! Serving one instance's guest socket: an accept loop on its listener,
//! one HTTP/1.1 connection task per caller (bounded in number and in
//! time), each checked once at accept against the instance's processes
//! (`peer`) and answered from the engine's current view of that instance
//! (`api`). Aborting the loop ends every connection with it.

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::api::Reply;
use super::peer::Owner;
use crate::Engine;

/// Connections served at once per instance; more are closed at accept.
const MAX_CONNECTIONS: usize = 32;
/// A caller must send its request head within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection's whole life (keep-alive included).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// What a connection needs to answer: the engine (weakly: the socket does
/// not keep a closed engine alive), the instance and its processes.
#[derive(Clone)]
pub(super) struct Target {
    pub engine: Weak<Engine>,
    pub name: String,
    pub owner: Owner,
}

pub(super) async fn accept_loop(listener: UnixListener, target: Target) {
    let mut conns = JoinSet::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
        let target = target.clone();
        conns.spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, serve_conn(stream, target, allowed))
                .await;
        });
    }
}

async fn serve_conn(stream: UnixStream, target: Target, allowed: bool) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let target = target.clone();
        async move { Ok::<_, Infallible>(respond(&target, allowed, &req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!("guest API connection: {e}");
    }
}

async fn respond(target: &Target, allowed: bool, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = match (allowed, target.engine.upgrade()) {
        (false, _) => Reply::forbidden(),
        (true, None) => Reply::error(503, "the daemon is shutting down"),
        (true, Some(engine)) => {
            engine
                .devlxd_answer(&target.name, req.method().as_str(), req.uri().path())
                .await
        }
    };
    Response::builder()
        .status(reply.status)
        .header("Content-Type", reply.content_type)
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
