//! Test support (feature `testing`): the real API — [`crate::router`] over a
//! real engine on the fakes of `kante_engine::testing` — on a unix socket
//! in a temporary directory, for the client's and the CLI's tests. There
//! is one route table; tests see the same daemon `kanted` runs, minus the
//! host.
//!
//! Every request is recorded (request line, headers, and JSON bodies) by
//! a layer around the router, so tests can check what a client sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use kante_engine::testing::TestHost;
use kante_engine::Engine;
use tokio::sync::oneshot;

/// Largest JSON body kept by the recorder.
const MAX_RECORDED_BODY: usize = 1 << 20;

/// One request as the daemon received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `METHOD /path?query`.
    pub line: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The body of a JSON request with a `Content-Length` of at most 1 MiB
    /// (empty for others).
    pub body: Vec<u8>,
}

impl Recorded {
    /// The JSON body, parsed.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// A daemon serving the real API over a test engine; see the module docs.
/// Dropping it stops serving.
pub struct TestDaemon {
    pub host: TestHost,
    pub engine: Arc<Engine>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<oneshot::Sender<()>>,
    /// Set by [`TestDaemon::start_background`]: the runtime it serves on.
    runtime: Option<tokio::runtime::Runtime>,
}

async fn record(log: Arc<Mutex<Vec<Recorded>>>, req: Request, next: Next) -> Response {
    let line = match req.uri().query() {
        Some(q) => format!("{} {}?{q}", req.method(), req.uri().path()),
        None => format!("{} {}", req.method(), req.uri().path()),
    };
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // Only JSON bodies of a known, bounded length: anything else (uploads,
    // chunked streams) reaches the handler untouched.
    let small_json = headers
        .get("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
        && headers
            .get("content-length")
            .and_then(|l| l.parse::<usize>().ok())
            .is_some_and(|l| l <= MAX_RECORDED_BODY);
    let (req, body) = if small_json {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_RECORDED_BODY)
            .await
            .unwrap_or_default();
        let kept = bytes.to_vec();
        (Request::from_parts(parts, Body::from(bytes)), kept)
    } else {
        (req, Vec::new())
    };
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Recorded {
            line,
            headers,
            body,
        });
    next.run(req).await
}

impl TestDaemon {
    /// Opens a test engine and serves it on the current tokio runtime.
    pub async fn start() -> TestDaemon {
        let host = TestHost::new();
        let engine = host.open().await;
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let log = requests.clone();
        let ws = Arc::new(crate::wslimit::WsSlots::from_env());
        crate::start_https(&engine, ws.clone()).await;
        let app = crate::router_shared(engine.clone(), ws).layer(axum::middleware::from_fn(
            move |req: Request, next: Next| record(log.clone(), req, next),
        ));
        let listener = crate::bind_private(&engine.paths.socket()).expect("binding the socket");
        listener.set_nonblocking(true).expect("non-blocking socket");
        let listener = tokio::net::UnixListener::from_std(listener).expect("tokio socket");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        TestDaemon {
            host,
            engine,
            requests,
            stop: Some(stop),
            runtime: None,
        }
    }

    /// Serves on a runtime of its own (for tests that run the CLI binary
    /// from plain `#[test]` functions); use [`TestDaemon::block_on`] to
    /// drive the engine there.
    pub fn start_background() -> TestDaemon {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let mut d = rt.block_on(TestDaemon::start());
        d.runtime = Some(rt);
        d
    }

    /// Runs `f` on the daemon's own runtime (background daemons only).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("block_on needs start_background")
            .block_on(f)
    }

    /// `KANTE_DIR` of the daemon: its socket is `unix.socket` in it.
    pub fn kante_dir(&self) -> PathBuf {
        self.host.kante_dir()
    }

    pub fn socket(&self) -> PathBuf {
        self.engine.paths.socket()
    }

    /// A test directory of the daemon's own, for files the test makes.
    pub fn scratch(&self) -> &Path {
        self.host.path()
    }

    /// The rootfs of instance `name` (on the default pool).
    pub fn rootfs(&self, name: &str) -> PathBuf {
        self.engine
            .paths
            .pool("default")
            .join("containers")
            .join(name)
            .join("rootfs")
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The request lines so far (`GET /1.0/instances?recursion=2`, …).
    pub fn lines(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.line).collect()
    }

    /// The last request whose line is `line` exactly.
    pub fn last(&self, line: &str) -> Option<Recorded> {
        self.requests().into_iter().rev().find(|r| r.line == line)
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
