//! The router against `docs/openapi.json`, seen from outside the route
//! table: each documented method of each documented path is matched by the
//! router to that very route (axum's `MatchedPath`) and answered by its
//! handler (no 405), every other method of a documented path gets 405, and
//! a path the document lacks matches nothing. The probes carry a malformed
//! JSON body and name things that do not exist, so no handler changes
//! anything.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use kante_engine::testing::TestHost;
use tower::ServiceExt;

const METHODS: &[&str] = &["GET", "PUT", "PATCH", "POST", "DELETE"];

/// `/1.0/instances/{name}` with each parameter filled by a name nothing has.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "openapi-probe"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An axum pattern as OpenAPI writes it (`{*name}` → `{name}`).
fn as_documented(pattern: &str) -> String {
    pattern.replace("{*", "{")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_exactly_the_documented_routes() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/openapi.json")).unwrap();
    let paths = doc["paths"].as_object().expect("the document has paths");
    assert!(paths.len() > 60, "{} paths", paths.len());
    let host = TestHost::new();
    let engine = host.open().await;
    // The route each request matched, seen after routing.
    let matched: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = matched.clone();
    let router = kante_http::router(engine.clone()).layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let seen = seen.clone();
            async move {
                *seen.lock().unwrap() = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|m| m.as_str().to_string());
                next.run(req).await
            }
        },
    ));
    let call = |method: &str, uri: &str| {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from("{\"openapi-probe\": [}"))
            .unwrap();
        let router = router.clone();
        let matched = matched.clone();
        let what = format!("{method} {uri}");
        async move {
            *matched.lock().unwrap() = None;
            let resp: Response = tokio::time::timeout(Duration::from_secs(20), router.oneshot(req))
                .await
                .unwrap_or_else(|_| panic!("{what} did not answer"))
                .unwrap();
            let route = matched.lock().unwrap().clone();
            (resp.status().as_u16(), route)
        }
    };
    let mut probes = 0;
    for (path, item) in paths {
        let uri = concrete(path);
        for method in METHODS {
            let (status, route) = call(method, &uri).await;
            if item.get(method.to_lowercase()).is_some() {
                assert_ne!(status, 405, "{method} {path} is documented");
                assert_eq!(
                    route.as_deref().map(as_documented).as_deref(),
                    Some(path.as_str()),
                    "{method} {uri} reached another route"
                );
                probes += 1;
            } else {
                assert_eq!(status, 405, "{method} {path} is not documented");
            }
        }
    }
    assert!(probes > 100, "{probes} documented operations");
    // A path outside the document matches no route.
    let (status, route) = call("GET", "/1.0/openapi-probe-nowhere").await;
    assert_eq!((status, route), (404, None));
}
