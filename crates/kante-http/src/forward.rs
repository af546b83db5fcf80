//! Cluster forwarding, the byte level. The middleware [`forward`] runs
//! after the trust gate and before the handlers: for a request about an
//! instance (`/1.0/instances/{name}[/…]`), an operation
//! (`/1.0/operations/{id}[/…]`), a member's state
//! (`/1.0/cluster/members/{name}/state`), a custom volume or any volume
//! route with `?target=MEMBER` (`/1.0/storage-pools/{pool}/volumes…`) it asks the engine where it is served
//! ([`Engine::route`]), for an instance creation where it is made
//! ([`Engine::place_instance`]); when the engine names another member,
//! the request (method, path and query, headers, body streamed) is sent
//! there over HTTPS, showing this member's server certificate and pinning
//! the member's, and its answer is streamed back. Websockets (exec,
//! console, migration) are joined both ways after the peer's `101`.
//! A forwarded request carries [`FORWARDED_HEADER`]; the member receiving
//! it checks that a member sent it ([`Engine::check_forwarded`]) and
//! serves it itself: there is never a second hop. [`Link`] is the engine's
//! [`PeerLink`]: the same connection, for the engine's own questions to
//! other members (the cluster-wide list, an unknown operation) and its
//! downloads from them (an image's files, streamed).
//!
//! [`Engine::route`]: kante_engine::Engine::route
//! [`Engine::place_instance`]: kante_engine::Engine::place_instance
//! [`Engine::check_forwarded`]: kante_engine::Engine::check_forwarded

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use kante_api::instance::InstancesPost;
use kante_engine::forward::{
    Download, Forward, PeerLink, Route, FORWARDED_HEADER, PLACEMENT_HEADER,
};
use kante_engine::front::Target;
use kante_engine::Engine;

use crate::{gate, response, AppState};

/// A member that does not accept a connection and a TLS handshake within
/// this is unreachable (a 503 naming it, no hang).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest creation body read to place it.
const CREATE_BODY: usize = 4 << 20;
/// Largest answer [`Link`] reads.
const LINK_BODY: usize = 256 << 20;

/// What a request is about, as far as forwarding cares.
enum Seen {
    Create,
    About(Target),
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The object of `method path?query`, parsed as the route table does.
fn seen(method: &Method, path: &str, query: Option<&str>) -> Option<Seen> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segs.as_slice() {
        // A pool's volumes live on each member: `?target=` names one.
        ["", "1.0", "storage-pools", pool, "volumes", rest @ ..] if !pool.is_empty() => {
            if let Some(member) = query_param(query, "target").filter(|t| !t.is_empty()) {
                return Some(Seen::About(Target::ClusterMember(member)));
            }
            match rest {
                // `VOLUME/SNAPSHOT` (a snapshot sent as a volume) is its volume's.
                ["custom", vol, ..] if !vol.is_empty() => Some(Seen::About(Target::Volume {
                    pool: decode(pool),
                    name: decode(vol)
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                })),
                ["container" | "virtual-machine", vol, ..] if !vol.is_empty() => {
                    Some(Seen::About(Target::Instance(decode(vol))))
                }
                _ => None,
            }
        }
        ["", "1.0", "instances" | "containers"] if method == Method::POST => Some(Seen::Create),
        ["", "1.0", "instances" | "containers", name, ..] if !name.is_empty() => {
            Some(Seen::About(Target::Instance(decode(name))))
        }
        ["", "1.0", "operations", id, ..] if !id.is_empty() => {
            Some(Seen::About(Target::Operation(decode(id))))
        }
        ["", "1.0", "cluster", "members", name, "state"] if !name.is_empty() => {
            Some(Seen::About(Target::ClusterMember(decode(name))))
        }
        _ => None,
    }
}

/// The query parameter `key`, decoded.
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| decode(&v.replace('+', " ")))
    })
}

fn failed(e: &kante_engine::EngineError) -> Response {
    response::error(e.status(), &e.to_string())
}

/// The middleware (see the module's doc).
pub async fn forward(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let access = gate::current();
    if let Some(from) = req.headers().get(FORWARDED_HEADER) {
        if let Err(e) = s.engine.check_forwarded(&access) {
            tracing::warn!(from = ?from, caller = ?access.caller, "forwarded request refused: {e}");
            return failed(&e);
        }
        if seen(req.method(), req.uri().path(), None).is_some_and(|x| matches!(x, Seen::Create)) {
            return create(&s, req, next, true).await;
        }
        return next.run(req).await;
    }
    match seen(req.method(), req.uri().path(), req.uri().query()) {
        None => next.run(req).await,
        Some(Seen::Create) => create(&s, req, next, false).await,
        Some(Seen::About(target)) => match s.engine.route(&target).await {
            Ok(Route::Local) => next.run(req).await,
            Ok(Route::Forward(to)) => proxy(&s.engine, &to, req).await,
            Err(e) => failed(&e),
        },
    }
}

/// `POST /1.0/instances`: placed by the engine, made here or forwarded.
async fn create(s: &AppState, req: Request, next: Next, forwarded: bool) -> Response {
    let json = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| !t.starts_with("application/octet-stream"));
    if !json {
        // A backup import: made where it arrives.
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, CREATE_BODY).await {
        Ok(b) => b,
        Err(e) => return response::error(400, &format!("Failed to read the request body: {e}")),
    };
    let rebuilt = |parts| Request::from_parts(parts, Body::from(bytes.clone()));
    let Ok(post) = crate::body::parse::<InstancesPost>(&bytes) else {
        // The handler says what is wrong with it.
        return next.run(rebuilt(parts)).await;
    };
    let target = query_param(parts.uri.query(), "target");
    let reason = forwarded.then(|| {
        parts
            .headers
            .get(PLACEMENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    });
    match s
        .engine
        .place_instance(&post, target.as_deref(), reason.as_deref())
        .await
    {
        Ok(placed) => match placed.forward {
            None => next.run(rebuilt(parts)).await,
            Some(to) => {
                let mut req = rebuilt(parts);
                let why: String = placed
                    .reason
                    .chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ' ')
                    .collect();
                if let Ok(v) = HeaderValue::from_str(&why) {
                    req.headers_mut()
                        .insert(HeaderName::from_static(PLACEMENT_HEADER), v);
                }
                let answer = proxy(&s.engine, &to, req).await;
                if !answer.status().is_success() {
                    s.engine.placement_abandoned(&post, &to.member).await;
                }
                answer
            }
        },
        Err(e) => failed(&e),
    }
}

/// A TLS connection to `to`, bounded by [`CONNECT_TIMEOUT`].
async fn connect(
    engine: &Engine,
    to: &Forward,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let der = kante_tls::parse_certificate(to.certificate.as_bytes())
        .map_err(|e| format!("no usable certificate is known for it: {e}"))?;
    let pin = kante_tls::ServerPin {
        expected: Some(kante_tls::fingerprint(&der)),
        ..Default::default()
    };
    let config =
        kante_tls::client_config(pin, Some(engine.server_identity())).map_err(|e| e.to_string())?;
    let host = to
        .address
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']))
        .unwrap_or(&to.address)
        .to_string();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| format!("bad address {}: {e}", to.address))?;
    let dial = async {
        let tcp = tokio::net::TcpStream::connect(&to.address)
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, dial)
        .await
        .map_err(|_| format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))?
}

/// Sends `req` to `to` marked as forwarded: the answer, or why not.
async fn send(
    engine: &Engine,
    to: &Forward,
    mut req: Request,
) -> Result<axum::http::Response<hyper::body::Incoming>, String> {
    let tls = connect(engine, to).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let me = engine.member_name().unwrap_or_default();
    let h = req.headers_mut();
    for hop in [
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "proxy-connection",
    ] {
        h.remove(hop);
    }
    if !h.contains_key(axum::http::header::UPGRADE) {
        h.remove(axum::http::header::CONNECTION);
    }
    if let Ok(v) = HeaderValue::from_str(&to.address) {
        h.insert(axum::http::header::HOST, v);
    }
    if let Ok(v) = HeaderValue::from_str(&me) {
        h.insert(HeaderName::from_static(FORWARDED_HEADER), v);
    }
    // Origin-form: the path and query only.
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = pq.parse().map_err(|e| format!("{e}"))?;
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// Proxies `req` to `to` and streams its answer back; a websocket is
/// joined both ways. An unreachable member is a 503 naming it.
async fn proxy(engine: &Arc<Engine>, to: &Forward, mut req: Request) -> Response {
    let client_upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    let verb = format!("{} {}", req.method(), req.uri().path());
    let mut resp = match send(engine, to, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(member = %to.member, %verb, "forwarding failed: {e}");
            return response::error(
                503,
                &format!(
                    "Cluster member {:?} ({}) is unreachable: {e}",
                    to.member, to.address
                ),
            );
        }
    };
    tracing::debug!(member = %to.member, %verb, status = %resp.status(), "forwarded");
    if resp.status() == StatusCode::ACCEPTED {
        let id = resp
            .headers()
            .get(axum::http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.strip_prefix("/1.0/operations/"))
            .map(str::to_string);
        if let Some(id) = id {
            engine.remember_operation(&id, &to.member);
        }
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let peer_upgrade = hyper::upgrade::on(&mut resp);
        let member = to.member.clone();
        if let Some(client_upgrade) = client_upgrade {
            tokio::spawn(async move {
                match futures_util::future::try_join(client_upgrade, peer_upgrade).await {
                    Ok((a, b)) => {
                        let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                    Err(e) => tracing::debug!(%member, "forwarded websocket: {e}"),
                }
            });
        }
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let (mut parts, body) = resp.into_parts();
    for hop in ["connection", "keep-alive", "transfer-encoding"] {
        parts.headers.remove(hop);
    }
    Response::from_parts(parts, Body::new(body))
}

/// A member's error answer in a few words: its status and LXD's `error`.
fn refusal(status: axum::http::StatusCode, doc: &serde_json::Value) -> String {
    let error = doc
        .get("error")
        .and_then(|e| e.as_str())
        .unwrap_or_default();
    format!("{status}: {error}")
}

/// The engine's [`PeerLink`] (see the module's doc).
pub struct Link {
    engine: Weak<Engine>,
}

impl Link {
    /// The link of `engine`.
    pub fn new(engine: &Arc<Engine>) -> Arc<Link> {
        Arc::new(Link {
            engine: Arc::downgrade(engine),
        })
    }
}

#[async_trait::async_trait]
impl PeerLink for Link {
    async fn send(
        &self,
        to: &Forward,
        method: &str,
        path_and_query: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<serde_json::Value, String> {
        let engine = self.engine.upgrade().ok_or("the daemon is stopping")?;
        let ask = async {
            let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
            let builder = Request::builder().method(method).uri(path_and_query);
            let req = match body {
                Some(doc) => builder
                    .header(axum::http::header::CONTENT_TYPE, "application/json")
                    .body(Body::from(doc.to_string())),
                None => builder.body(Body::empty()),
            }
            .map_err(|e| e.to_string())?;
            let resp = send(&engine, to, req).await?;
            let status = resp.status();
            let bytes = axum::body::to_bytes(Body::new(resp.into_body()), LINK_BODY)
                .await
                .map_err(|e| e.to_string())?;
            let doc: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
            if !status.is_success() {
                return Err(refusal(status, &doc));
            }
            Ok(doc.get("metadata").cloned().unwrap_or_default())
        };
        tokio::time::timeout(timeout, ask)
            .await
            .map_err(|_| format!("no answer within {}s", timeout.as_secs()))?
    }

    async fn download(
        &self,
        to: &Forward,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<Download, String> {
        use futures_util::StreamExt;
        use http_body_util::BodyExt;
        let engine = self.engine.upgrade().ok_or("the daemon is stopping")?;
        let ask = async {
            let req = Request::builder()
                .method(Method::GET)
                .uri(path_and_query)
                .body(Body::empty())
                .map_err(|e| e.to_string())?;
            let resp = send(&engine, to, req).await?;
            let status = resp.status();
            if !status.is_success() {
                let bytes = axum::body::to_bytes(Body::new(resp.into_body()), 1 << 20)
                    .await
                    .unwrap_or_default();
                let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                return Err(refusal(status, &doc));
            }
            let header = |h| {
                resp.headers()
                    .get(h)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(str::to_string)
            };
            let content_type = header(axum::http::header::CONTENT_TYPE).unwrap_or_default();
            let length = header(axum::http::header::CONTENT_LENGTH).and_then(|l| l.parse().ok());
            let body = resp
                .into_body()
                .into_data_stream()
                .map(|c| c.map_err(std::io::Error::other))
                .boxed();
            Ok(Download {
                content_type,
                length,
                body,
            })
        };
        tokio::time::timeout(timeout, ask)
            .await
            .map_err(|_| format!("no answer within {}s", timeout.as_secs()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about(method: Method, path: &str) -> Option<Target> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        match seen(&method, path, query)? {
            Seen::About(t) => Some(t),
            Seen::Create => None,
        }
    }

    #[test]
    fn paths_name_what_they_are_about() {
        assert!(matches!(
            seen(&Method::POST, "/1.0/instances", None),
            Some(Seen::Create)
        ));
        assert!(matches!(
            seen(&Method::POST, "/1.0/containers/", None),
            Some(Seen::Create)
        ));
        assert!(about(Method::GET, "/1.0/instances").is_none());
        assert_eq!(
            about(Method::POST, "/1.0/instances/c%201/exec"),
            Some(Target::Instance("c 1".into()))
        );
        // The console is forwarded like exec, its websockets by operation.
        assert_eq!(
            about(Method::POST, "/1.0/instances/c1/console"),
            Some(Target::Instance("c1".into()))
        );
        assert_eq!(
            about(Method::GET, "/1.0/containers/c1/snapshots/s0"),
            Some(Target::Instance("c1".into()))
        );
        assert_eq!(
            about(Method::GET, "/1.0/operations/abc/websocket"),
            Some(Target::Operation("abc".into()))
        );
        assert!(about(Method::GET, "/1.0/operations").is_none());
        assert_eq!(
            about(Method::POST, "/1.0/cluster/members/h2/state"),
            Some(Target::ClusterMember("h2".into()))
        );
        assert!(about(Method::GET, "/1.0/cluster/members/h2").is_none());
        assert!(about(Method::GET, "/1.0/images/abc").is_none());
        // Volumes: a custom one by its holder, an instance's by the
        // instance, any volume route with `?target=` by that member.
        assert_eq!(
            about(
                Method::GET,
                "/1.0/storage-pools/p/volumes/custom/v%201/snapshots"
            ),
            Some(Target::Volume {
                pool: "p".into(),
                name: "v 1".into()
            })
        );
        assert_eq!(
            about(
                Method::POST,
                "/1.0/storage-pools/p/volumes/custom/v1%2Fsnap0"
            ),
            Some(Target::Volume {
                pool: "p".into(),
                name: "v1".into()
            }),
            "a snapshot sent as a volume is its volume's"
        );
        assert_eq!(
            about(Method::GET, "/1.0/storage-pools/p/volumes/container/c1"),
            Some(Target::Instance("c1".into()))
        );
        assert_eq!(
            about(
                Method::POST,
                "/1.0/storage-pools/p/volumes/custom?target=h2"
            ),
            Some(Target::ClusterMember("h2".into()))
        );
        assert!(about(Method::GET, "/1.0/storage-pools/p/volumes").is_none());
        assert!(about(Method::GET, "/1.0/storage-pools/p/volumes/image/abc").is_none());
        assert!(about(Method::GET, "/1.0/storage-pools/p").is_none());
    }

    #[test]
    fn the_target_parameter_is_decoded() {
        assert_eq!(
            query_param(Some("project=default&target=h%203"), "target").as_deref(),
            Some("h 3")
        );
        assert_eq!(query_param(Some("recursion=1"), "target"), None);
        assert_eq!(query_param(None, "target"), None);
    }
}
