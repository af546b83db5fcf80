//! What every request carries beside its route: its `?project=` (only
//! `default` exists: another is 404 before the handler runs, see
//! `kante_engine::projects`) and its `If-Match`, kept for the handler's
//! task so the engine checks it against the object's ETag
//! ([`kante_engine::Engine::handle_matching`]). Runs after the trust
//! gate, so an untrusted caller learns nothing from it.

use axum::extract::Request;
use axum::http::header::IF_MATCH;
use axum::middleware::Next;
use axum::response::Response;

use crate::response;

tokio::task_local! {
    static IF_MATCH_VALUE: Option<String>;
}

/// The `If-Match` of the request this task serves.
pub fn if_match() -> Option<String> {
    IF_MATCH_VALUE.try_with(Clone::clone).ok().flatten()
}

/// The `project` query parameter, if any.
fn project(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == "project").then(|| {
            let v = v.replace('+', " ");
            percent_encoding::percent_decode_str(&v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The middleware.
pub async fn scope(req: Request, next: Next) -> Response {
    if let Err(e) = kante_engine::projects::check_project(project(req.uri().query()).as_deref()) {
        return response::error(e.status(), &e.to_string());
    }
    let m = req
        .headers()
        .get(IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    IF_MATCH_VALUE.scope(m, next.run(req)).await
}
