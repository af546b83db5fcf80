//! The web view (`/ui/`): static files compiled into kanted (`build.rs`
//! gzips `ui/static/` and `ui/vendor/` at build time), served with their
//! ETag (`If-None-Match` gives 304), gzipped when the client accepts it,
//! and a strict content security policy (nothing but this origin). Open to
//! anyone: they hold no data, and the page shows its login step until the
//! API trusts it. The login (`POST /ui/login`) and logout go through the
//! engine's front door; this module only renders their cookie, and reads
//! it for the gate ([`session_of`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kante_engine::front::Request;
use kante_engine::remote::sessions::{Session, SESSION_COOKIE, UI_HEADER};
use serde::Deserialize;

use crate::body::Json;
use crate::response::{answer, error, ApiResult};
use crate::{AppState, Routes};

/// One file of the web view.
pub struct Asset {
    /// Its path under `/ui/`.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub mime: &'static str,
    /// Its bytes as they are in `ui/`.
    pub raw: &'static [u8],
    /// Gzipped at build time.
    pub gz: &'static [u8],
    /// A strong ETag (a hash of `raw`, quoted).
    pub etag: &'static str,
}

/// Every file of the web view.
pub static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The page's policy: its own files, its own API and websockets, inline
/// styles (xterm.js sets them), nothing from elsewhere, never in a frame.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// The web view's routes.
pub fn routes(r: Routes) -> Routes {
    use crate::methods::{get, post};
    r.route("/ui", get(|| async { redirect() }))
        .route(
            "/ui/",
            get(|h: HeaderMap| async move { serve("index.html", &h) }),
        )
        .route("/ui/login", get(file_login).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/{*file}", get(file))
}

fn redirect() -> Response {
    (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/ui/")]).into_response()
}

async fn file_login(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

/// `path` with caching and compression as the request allows.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return error(404, "not found");
    };
    let mut h = HeaderMap::new();
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    // Revalidated each time: a new kanted serves new files at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert("X-Frame-Options", HeaderValue::from_static("DENY"));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    let body = if accepts_gzip(headers) {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        asset.gz
    } else {
        asset.raw
    };
    (StatusCode::OK, h, Body::from(body)).into_response()
}

/// Whether `Accept-Encoding` lists gzip (without `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let q0 = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q0
        })
}

/// The login's body: the token from the link's fragment.
#[derive(Deserialize, Default, schemars::JsonSchema)]
pub struct LoginPost {
    #[serde(default)]
    token: String,
}

async fn login(State(s): State<AppState>, Json(post): Json<LoginPost>) -> ApiResult {
    answer(&s, Request::UiLogin { token: post.token }).await
}

async fn logout(State(s): State<AppState>, headers: HeaderMap) -> ApiResult {
    let Some(session) = session_of(&headers) else {
        return Ok(error(404, "no session"));
    };
    let mut resp = answer(&s, Request::UiLogout { session }).await?;
    resp.headers_mut().insert(header::SET_COOKIE, cookie("", 0));
    Ok(resp)
}

fn cookie(id: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The reply to a login: the session's cookie, and its lifetime.
pub fn session_response(s: &Session) -> ApiResult {
    let mut resp = crate::response::sync(serde_json::json!({ "expires_in": s.max_age }))?;
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie(&s.id, s.max_age));
    Ok(resp)
}

/// The session id in a request's `Cookie` header, if any.
pub fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The facts the gate's CSRF rule needs of a browser request: whether it
/// is a websocket upgrade, carries the web view's header, and comes from
/// the listener's own origin (`Origin` is `https://` + `Host`).
pub fn browser_facts(headers: &HeaderMap) -> (bool, bool, bool) {
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let ui_header = headers
        .get(UI_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "1");
    let same_origin = match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => origin == format!("https://{host}"),
        _ => false,
    };
    (websocket, ui_header, same_origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn gzip_is_chosen_only_when_accepted() {
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "gzip, deflate, br"
        )])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "br")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[])));
    }

    #[test]
    fn the_page_and_its_console_files_are_compiled_in() {
        for p in [
            "index.html",
            "app.js",
            "app.css",
            "console.js",
            "vendor/xterm.js",
        ] {
            let a = ASSETS
                .iter()
                .find(|a| a.path == p)
                .unwrap_or_else(|| panic!("{p}"));
            assert!(!a.raw.is_empty() && a.gz.len() < a.raw.len(), "{p}");
        }
        let h = headers(&[("if-none-match", "\"x\"")]);
        assert_eq!(serve("index.html", &h).status(), StatusCode::OK);
        let etag = ASSETS[0].etag;
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(etag));
        assert_eq!(serve(ASSETS[0].path, &h).status(), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn the_cookie_is_read_among_others() {
        let h = headers(&[("cookie", "a=b; kante_ui=abc; c=d")]);
        assert_eq!(session_of(&h).as_deref(), Some("abc"));
        assert_eq!(session_of(&headers(&[("cookie", "a=b")])), None);
    }

    #[test]
    fn same_origin_is_the_listeners_own() {
        let h = headers(&[
            ("upgrade", "websocket"),
            ("origin", "https://127.0.0.1:8443"),
            ("host", "127.0.0.1:8443"),
        ]);
        assert_eq!(browser_facts(&h), (true, false, true));
        let h = headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8443"),
        ]);
        assert_eq!(browser_facts(&h), (false, false, false));
    }
}
