//! The trust gate every request passes: who called (the unix socket, or
//! the HTTPS peer [`https`](crate::https) recorded on the request) and
//! whether the engine trusts it ([`Engine::trusts`], asked on every
//! request). An untrusted caller reaches only the engine's
//! [`UNTRUSTED_ROUTES`]; anything else is 403 before its body is read. The
//! caller then rides along the handler's task, so [`handle`] passes it to
//! the engine, which checks the verb again. A restricted certificate
//! (`kante_engine::remote::restricted`) is held to its projects here too,
//! before anything is forwarded to another member.
//!
//! [`Engine::trusts`]: kante_engine::Engine::trusts
//! [`UNTRUSTED_ROUTES`]: kante_engine::remote::UNTRUSTED_ROUTES

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use kante_engine::front::{Reply, Request as Verb};
use kante_engine::remote::restricted::restricted_refusal;
use kante_engine::remote::sessions::{browser_request_allowed, session_key};
use kante_engine::remote::{open_to_untrusted, Access, Caller};
use kante_engine::EngineError;

use crate::https::SessionWatch;
use crate::{response, AppState};

/// The HTTPS peer of a request, put on it by the HTTPS listener. A request
/// without one came through the unix socket.
#[derive(Clone, Debug)]
pub struct Peer(pub Caller);

tokio::task_local! {
    static ACCESS: Access;
}

/// The caller of the request this task serves. Outside a request that
/// went through [`gate`], nobody: untrusted.
pub fn current() -> Access {
    ACCESS.try_with(Access::clone).unwrap_or(Access {
        caller: Caller::Remote {
            address: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            certificate: None,
            fingerprint: None,
        },
        trusted: false,
    })
}

/// Hands `req` to the engine as the current caller.
pub async fn handle(s: &AppState, req: Verb) -> Result<Reply, EngineError> {
    let if_match = crate::scope::if_match();
    s.engine
        .handle_matching(&current(), req, if_match.as_deref())
        .await
}

/// The middleware: classifies the caller, refuses what an untrusted one
/// may not reach, and runs the handler with the caller set.
pub async fn gate(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let caller = match req.extensions().get::<Peer>() {
        Some(Peer(c)) => c.clone(),
        None => Caller::Local,
    };
    let mut trusted = s.engine.trusts(&caller).await;
    if !trusted && matches!(caller, Caller::Remote { .. }) {
        // A browser of the web view: its session cookie, with the CSRF
        // checks (`kante_engine::remote::sessions`).
        if let Some(id) = crate::ui::session_of(req.headers()) {
            let (websocket, header, same_origin) = crate::ui::browser_facts(req.headers());
            trusted = browser_request_allowed(websocket, header, same_origin)
                && s.engine.trusts_session(&id).await;
            if let (true, Some(w)) = (trusted, req.extensions().get::<SessionWatch>()) {
                w.name(session_key(&id));
            }
        }
    }
    let open = open_to_untrusted(req.method().as_str(), req.uri().path());
    let reader = !trusted && is_metrics(&req) && s.engine.holds_metrics_certificate(&caller).await;
    if !(trusted || open || reader) {
        tracing::debug!(method = %req.method(), path = %req.uri().path(), ?caller, "untrusted caller refused");
        return response::error(403, "not authorized");
    }
    if let Some(projects) = s.engine.restriction(&caller).await {
        let refusal = restricted_refusal(req.method().as_str(), req.uri().path(), &projects);
        if let Some(why) = refusal {
            tracing::debug!(method = %req.method(), path = %req.uri().path(), ?caller, "restricted caller refused");
            return response::error(403, &why);
        }
    }
    ACCESS
        .scope(Access { caller, trusted }, next.run(req))
        .await
}

/// `GET /1.0/metrics`, which a `metrics` certificate may reach (the
/// engine checks it again).
fn is_metrics(req: &Request) -> bool {
    req.method() == axum::http::Method::GET && req.uri().path() == "/1.0/metrics"
}
