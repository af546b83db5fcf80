//! Copying an image from another server: `POST /1.0/images` with
//! `source: {type: "image", mode: "pull", protocol: "lxd", server,
//! certificate, alias | fingerprint}`, as `lxc image copy` sends it to the
//! destination. The daemon connects to the source over HTTPS, pinned to
//! the certificate the request names (an untrusted client: it sees the
//! source's public images), resolves the alias, and streams the export
//! through the same single-pass store an upload goes through (hashed,
//! checked, capped, the sha256 compared with the fingerprint; nothing is
//! kept when anything fails), reporting `download_progress` in the
//! operation's metadata as LXD does. A split image (a multipart export:
//! `metadata`, then `rootfs`) goes through the upload's parts path.
//! Private images by secret are not supported yet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kante_api::image::ImagesPost;
use serde_json::{json, Value};
use tokio_rustls::rustls::pki_types::ServerName;

use crate::error::{EngineError, Result};
use crate::front::feed;
use crate::images::ImageUpload;
use crate::operations::Op;
use crate::Engine;

/// How long reaching the source (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the source may stay silent (headers, or between chunks).
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest JSON answer taken from the source (an image's record, an
/// alias).
const MAX_ANSWER: usize = 1 << 20;

/// An HTTPS server the daemon downloads from: pinned to a certificate's
/// fingerprint, or (no pin) verified against the system's CA bundle.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `host:port` of the server, and its host alone (the TLS name).
    pub(crate) authority: String,
    host: String,
    port: u16,
    /// The pinned certificate's fingerprint.
    pin: Option<String>,
}

/// What a pull request names.
#[derive(Debug, Clone)]
pub(crate) struct PullSource {
    endpoint: Endpoint,
    alias: Option<String>,
    fingerprint: Option<String>,
    secret: Option<String>,
}

pub(crate) fn field<'a>(source: &'a Value, key: &str) -> &'a str {
    source.get(key).and_then(Value::as_str).unwrap_or("")
}

impl Endpoint {
    /// `https://HOST[:PORT]` with the certificate `pem` pinned (none: the
    /// system's CA bundle decides); returns the endpoint and the path
    /// after the authority (without its trailing `/`).
    pub(crate) fn parse(server: &str, pem: &str, default_port: u16) -> Result<(Endpoint, String)> {
        let rest = server.strip_prefix("https://").ok_or_else(|| {
            EngineError::bad(format!(
                "Image source server {server:?} must be an https:// address"
            ))
        })?;
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a.to_string(), format!("/{}", p.trim_end_matches('/'))),
            None => (rest.to_string(), String::new()),
        };
        let path = path.trim_end_matches('/').to_string();
        if authority.is_empty() {
            return Err(EngineError::bad(format!(
                "Image source server {server:?} must be https://HOST[:PORT]"
            )));
        }
        let (host, port) = split_authority(&authority, default_port)
            .ok_or_else(|| EngineError::bad(format!("Bad image source server {server:?}")))?;
        let pin = if pem.trim().is_empty() {
            None
        } else {
            let der = kante_tls::parse_certificate(pem.as_bytes())
                .map_err(|e| EngineError::bad(format!("Bad source certificate: {e}")))?;
            Some(kante_tls::fingerprint(&der))
        };
        Ok((
            Endpoint {
                authority: format!("{}:{port}", bracket(&host)),
                host,
                port,
                pin,
            },
            path,
        ))
    }
}

impl PullSource {
    /// Reads `source` of a `POST /1.0/images`; `Ok(None)` when it is not
    /// an image pull at all.
    pub(crate) fn parse(source: &Value) -> Result<Option<PullSource>> {
        if field(source, "type") != "image" {
            return Ok(None);
        }
        let mode = field(source, "mode");
        if !mode.is_empty() && mode != "pull" {
            return Err(EngineError::NotImplemented(format!(
                "Image copy mode {mode:?} is not supported (only \"pull\")"
            )));
        }
        match field(source, "protocol") {
            "" | "lxd" => {}
            other => {
                return Err(EngineError::NotImplemented(format!(
                    "Image server protocol {other:?} is not supported yet (only \"lxd\")"
                )))
            }
        }
        let pem = field(source, "certificate");
        if pem.trim().is_empty() {
            return Err(EngineError::bad(
                "Image source needs the server's certificate (source.certificate)",
            ));
        }
        let (endpoint, path) =
            Endpoint::parse(field(source, "server"), pem, crate::remote::DEFAULT_PORT)?;
        if !path.is_empty() {
            return Err(EngineError::bad(format!(
                "Image source server {:?} must be https://HOST[:PORT]",
                field(source, "server")
            )));
        }
        let alias = Some(field(source, "alias").to_string()).filter(|s| !s.is_empty());
        let fingerprint = Some(field(source, "fingerprint").to_string()).filter(|s| !s.is_empty());
        if alias.is_none() && fingerprint.is_none() {
            return Err(EngineError::bad(
                "Image source needs an alias or a fingerprint",
            ));
        }
        Ok(Some(PullSource {
            endpoint,
            alias,
            fingerprint,
            secret: Some(field(source, "secret").to_string()).filter(|s| !s.is_empty()),
        }))
    }
}

/// `host:port`, `[v6]:port`, or a host alone (`default` port).
pub(crate) fn split_authority(a: &str, default: u16) -> Option<(String, u16)> {
    if let Some(rest) = a.strip_prefix('[') {
        let (h, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => default,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        _ => Some((a.to_string(), default)),
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// A server dialled over TLS, as errors name it.
pub(crate) struct TlsPeer<'a> {
    /// `image server`, `migration peer`.
    pub what: &'static str,
    pub host: &'a str,
    pub port: u16,
    /// `host:port`, as shown.
    pub authority: &'a str,
}

impl TlsPeer<'_> {
    pub(crate) fn unreachable(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::bad(format!(
            "Cannot reach the {} https://{}: {e}",
            self.what, self.authority
        ))
    }
}

/// TCP, then TLS with `cfg` (which records what the server showed in
/// `pin`): a certificate other than the pinned one is refused with both
/// fingerprints, anything else is "cannot reach". The caller bounds it.
pub(crate) async fn dial_tls(
    peer: TlsPeer<'_>,
    cfg: kante_tls::rustls::ClientConfig,
    pin: &kante_tls::ServerPin,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name = ServerName::try_from(peer.host.to_string())
        .map_err(|e| EngineError::bad(format!("Bad {} name: {e}", peer.what)))?;
    let tcp = tokio::net::TcpStream::connect((peer.host, peer.port))
        .await
        .map_err(|e| peer.unreachable(e))?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| match (pin.seen_fingerprint(), &pin.expected) {
            (Some(seen), Some(want)) if seen != *want => EngineError::bad(format!(
                "The {} https://{} showed certificate {seen}, not the expected {want}",
                peer.what, peer.authority
            )),
            _ => peer.unreachable(e),
        })
}

/// Percent-encodes a path segment or a query value (an alias may hold
/// `/` and spaces).
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

type Response = hyper::Response<hyper::body::Incoming>;

impl Endpoint {
    fn unreachable(&self, e: impl std::fmt::Display) -> EngineError {
        TlsPeer {
            what: "image server",
            host: &self.host,
            port: self.port,
            authority: &self.authority,
        }
        .unreachable(e)
    }

    /// The TLS client configuration: the pin, or the system's CAs.
    fn tls_config(&self, pin: &kante_tls::ServerPin) -> Result<kante_tls::rustls::ClientConfig> {
        if self.pin.is_some() {
            return kante_tls::client_config(pin.clone(), None)
                .map_err(|e| EngineError::internal(format!("TLS client: {e}")));
        }
        let file = kante_tls::system_ca_file();
        let bundle = std::fs::read(&file).map_err(|e| {
            EngineError::bad(format!(
                "No certificate pinned for https://{} and the system's CA bundle {} cannot be read: {e}",
                self.authority,
                file.display()
            ))
        })?;
        kante_tls::ca_client_config(&bundle)
            .map_err(|e| EngineError::internal(format!("TLS client: {e}")))
    }

    /// One GET on a fresh connection, the server pinned (or CA-verified).
    pub(crate) async fn get(&self, path: &str) -> Result<Response> {
        let pin = kante_tls::ServerPin {
            expected: self.pin.clone(),
            ..Default::default()
        };
        let cfg = self.tls_config(&pin)?;
        let connect = async {
            let tls = dial_tls(
                TlsPeer {
                    what: "image server",
                    host: &self.host,
                    port: self.port,
                    authority: &self.authority,
                },
                cfg,
                &pin,
            )
            .await?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| self.unreachable(e))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, EngineError>(sender)
        };
        let mut sender = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| self.unreachable("timed out"))??;
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::USER_AGENT, "kanted")
            .body(Empty::<Bytes>::new())
            .map_err(|e| EngineError::internal(e.to_string()))?;
        tokio::time::timeout(STALL_TIMEOUT, sender.send_request(req))
            .await
            .map_err(|_| self.unreachable("no answer"))?
            .map_err(|e| self.unreachable(e))
    }

    /// A GET whose answer is JSON, at most `max` bytes: its status and
    /// document (`Null` if it is not JSON).
    pub(crate) async fn get_doc(
        &self,
        path: &str,
        max: usize,
    ) -> Result<(hyper::StatusCode, Value)> {
        let resp = self.get(path).await?;
        let status = resp.status();
        // Capped while it is read, not after: a hostile server's endless
        // answer must not be held in memory first.
        let limited = http_body_util::Limited::new(resp.into_body(), max);
        let body = tokio::time::timeout(STALL_TIMEOUT, limited.collect())
            .await
            .map_err(|_| self.unreachable("no answer"))?
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    EngineError::bad("The image server's answer is too large")
                } else {
                    self.unreachable(e)
                }
            })?
            .to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}

impl PullSource {
    /// A GET whose answer is an LXD sync response: its `metadata`.
    async fn get_json(&self, path: &str) -> Result<Value> {
        let (status, doc) = self.endpoint.get_doc(path, MAX_ANSWER).await?;
        if status == hyper::StatusCode::NOT_FOUND {
            return Err(EngineError::NotFound(
                "Image not found on the image server (or not public)".into(),
            ));
        }
        if !status.is_success() {
            return Err(EngineError::bad(format!(
                "The image server answered {status}: {}",
                field(&doc, "error")
            )));
        }
        Ok(doc.get("metadata").cloned().unwrap_or(Value::Null))
    }

    fn with_secret(&self, path: String) -> String {
        match &self.secret {
            Some(s) => format!("{path}?secret={}", escape(s)),
            None => path,
        }
    }

    /// The image's record on the source, by alias or fingerprint. As in
    /// LXD, either field may hold either (lxc sends an alias it was given
    /// in `fingerprint`): an alias of that name wins, else a fingerprint.
    /// With a secret the fingerprint comes first: a private image's
    /// aliases are not shown to this untrusted puller.
    async fn image(&self) -> Result<Value> {
        let (alias, fp) = (self.alias.as_deref(), self.fingerprint.as_deref());
        let name = if self.secret.is_some() {
            fp.or(alias)
        } else {
            alias.or(fp)
        }
        .unwrap_or_default();
        let fp = match self
            .get_json(&format!("/1.0/images/aliases/{}", escape(name)))
            .await
        {
            Ok(a) => field(&a, "target").to_string(),
            Err(EngineError::NotFound(_)) if name.bytes().all(|b| b.is_ascii_hexdigit()) => {
                name.to_string()
            }
            Err(e) => return Err(e),
        };
        if fp.is_empty() || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(EngineError::bad("The image server named no image"));
        }
        self.get_json(&self.with_secret(format!("/1.0/images/{fp}")))
            .await
    }
}

impl Engine {
    /// Downloads the image `source` names from an LXD image server (unless
    /// it is here already) and records it with the request's aliases;
    /// returns its fingerprint and whether it was downloaded.
    pub(crate) async fn pull(
        &self,
        op: &Op,
        post: ImagesPost,
        source: PullSource,
    ) -> Result<(String, bool)> {
        tracing::info!(
            server = %source.endpoint.authority,
            alias = source.alias.as_deref().unwrap_or(""),
            fingerprint = source.fingerprint.as_deref().unwrap_or(""),
            secret = source.secret.is_some(),
            "copying an image from another server"
        );
        let info = source.image().await?;
        let fp = field(&info, "fingerprint").to_string();
        if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(EngineError::bad("The image server sent no fingerprint"));
        }
        if self.shared.image_get(&fp).await?.is_some() {
            // Already here: the copy only adds the asked aliases.
            for a in &post.aliases {
                self.alias_create(kante_api::image::ImageAliasesPost {
                    name: a.name.clone(),
                    description: a.description.clone(),
                    target: fp.clone(),
                    ..Default::default()
                })
                .await?;
            }
            op.set_metadata(json!({"fingerprint": fp}));
            return Ok((fp, false));
        }
        let resp = source
            .endpoint
            .get(&source.with_secret(format!("/1.0/images/{fp}/export")))
            .await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(if status == hyper::StatusCode::NOT_FOUND {
                EngineError::NotFound("Image not found on the image server (or not public)".into())
            } else {
                EngineError::bad(format!("The image server answered {status} to the export"))
            });
        }
        let ctype = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let total = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .or_else(|| info.get("size").and_then(Value::as_u64))
            .unwrap_or(0);
        let body = resp
            .into_body()
            .into_data_stream()
            .map(|c| c.map_err(std::io::Error::other))
            .boxed();
        let task = self
            .store_export_reporting(op, &fp, &ctype, body, total)
            .await
            .map_err(|e| {
                EngineError::bad(format!(
                    "Downloading the image from https://{} failed: {e}",
                    source.endpoint.authority
                ))
            })?;
        let filename = field(&info, "filename").to_string();
        let mut properties = kante_api::ConfigMap::new();
        if let Some(p) = info.get("properties").and_then(Value::as_object) {
            for (k, v) in p {
                if let Some(v) = v.as_str() {
                    properties.insert(k.clone(), v.to_string());
                }
            }
        }
        properties.extend(post.properties.clone());
        self.record_upload(
            op,
            ImageUpload {
                stored: task,
                filename,
                public: post.public,
                properties,
                aliases: post.aliases.clone(),
                profiles: None,
            },
        )
        .await?;
        if post.auto_update {
            if let Some(mut row) = self.shared.image_get(&fp).await? {
                row.auto_update = true;
                self.shared.image_update(&row).await?;
            }
        }
        Ok((fp.clone(), true))
    }
}

impl Engine {
    /// Streams an image's export (`GET /1.0/images/FP/export`: a split
    /// image as `multipart/…` parts, `metadata` then `rootfs`, else one
    /// unified file) into the store, which hashes it on the way and keeps
    /// it only if its sha256 is `fp`; a source silent too long fails it.
    /// Nothing is left behind on failure.
    pub(crate) async fn store_export(
        &self,
        fp: &str,
        content_type: &str,
        body: crate::front::ByteStream,
    ) -> Result<crate::images::StoreTask> {
        let stall = tokio_stream_timeout(body);
        if content_type.starts_with("multipart/") {
            let b = multer::parse_boundary(content_type)
                .map_err(|e| EngineError::bad(format!("The export is not multipart: {e}")))?;
            let info = crate::front::ImageUploadInfo {
                expected_fingerprint: Some(fp.to_string()),
                ..Default::default()
            };
            let parts = Box::new(ExportParts(multer::Multipart::new(stall, b)));
            return self.upload_parts(&info, parts).await;
        }
        let (feed, reader) = feed::channel();
        let task = self.store_task(Some(fp.to_string()), move |d, e, l| {
            kante_images::store_unified(d, reader, e, l)
        });
        match feed.pump(stall).await {
            Ok(()) => Ok(task),
            Err(e) => {
                self.abandon_store(task).await;
                Err(EngineError::bad(e.to_string()))
            }
        }
    }
}

impl Engine {
    /// [`Engine::store_export`] reporting `download_progress` on `op`
    /// (bytes so far of `total`) every half second and once at the end.
    pub(crate) async fn store_export_reporting(
        &self,
        op: &Op,
        fp: &str,
        content_type: &str,
        body: crate::front::ByteStream,
        total: u64,
    ) -> Result<crate::images::StoreTask> {
        let done = Arc::new(AtomicU64::new(0));
        let store = self.store_export(fp, content_type, counted(body, done.clone()));
        tokio::pin!(store);
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let task = loop {
            tokio::select! {
                r = &mut store => break r?,
                _ = tick.tick() => report(op, done.load(Ordering::Relaxed), total, start),
            }
        };
        report(op, done.load(Ordering::Relaxed), total, start);
        Ok(task)
    }
}

/// `body`, its bytes counted in `done` as they pass.
fn counted(body: crate::front::ByteStream, done: Arc<AtomicU64>) -> crate::front::ByteStream {
    body.map(move |c| {
        if let Ok(c) = &c {
            done.fetch_add(c.len() as u64, Ordering::Relaxed);
        }
        c
    })
    .boxed()
}

/// The parts of a split image's export.
struct ExportParts(multer::Multipart<'static>);

#[async_trait::async_trait]
impl crate::front::Parts for ExportParts {
    async fn next_part(&mut self) -> Result<Option<(String, crate::front::ByteStream)>> {
        let field = self
            .0
            .next_field()
            .await
            .map_err(|e| EngineError::bad(format!("The image server's export: {e}")))?;
        Ok(field.map(|f| {
            let name = f.name().unwrap_or("").to_string();
            let stream: crate::front::ByteStream =
                Box::pin(f.map(|r| r.map_err(std::io::Error::other)));
            (name, stream)
        }))
    }
}

/// The body, failing when the source stays silent too long.
pub(crate) fn tokio_stream_timeout(body: crate::front::ByteStream) -> crate::front::ByteStream {
    futures_util::stream::unfold(body, |mut body| async move {
        match tokio::time::timeout(STALL_TIMEOUT, body.next()).await {
            Ok(Some(item)) => Some((item, body)),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the image server stopped sending",
                )),
                body,
            )),
        }
    })
    .boxed()
}

/// `download_progress` as LXD words it (`rootfs: 45% (12.30MB/s)`), and
/// the structured `progress`.
pub(crate) fn report(op: &Op, done: u64, total: u64, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    let speed = if secs > 0.0 {
        (done as f64 / secs) as u64
    } else {
        0
    };
    let pct = (done * 100).checked_div(total).unwrap_or(0).min(100);
    op.set_metadata(json!({
        "download_progress": format!("rootfs: {pct}% ({})", crate::images::human_rate(speed)),
        "progress": {"percent": pct.to_string(), "speed": speed.to_string(), "stage": "download", "processed": done.to_string()},
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_as_lxd_writes_them() {
        assert_eq!(
            split_authority("10.0.0.1:8443", 8443),
            Some(("10.0.0.1".into(), 8443))
        );
        assert_eq!(split_authority("host", 8443), Some(("host".into(), 8443)));
        assert_eq!(
            split_authority("[::1]:9443", 8443),
            Some(("::1".into(), 9443))
        );
        assert_eq!(split_authority("[::1]", 443), Some(("::1".into(), 443)));
        assert_eq!(split_authority("h:x", 8443), None);
        assert_eq!(escape("debian/12 x"), "debian%2F12%20x");
    }

    #[test]
    fn a_pull_request_is_checked_before_anything_runs() {
        let pair = kante_tls::KeyPair::generate(kante_tls::Role::Server, &["s".into()]).unwrap();
        let pem = pair.cert_pem.clone();
        let src = |v: Value| PullSource::parse(&v);
        assert!(src(json!({"type": "url"})).unwrap().is_none());
        let ok = src(json!({"type": "image", "mode": "pull", "protocol": "lxd",
            "server": "https://127.0.0.1:8443", "certificate": pem, "alias": "a/b"}))
        .unwrap()
        .unwrap();
        assert_eq!(ok.endpoint.pin, Some(pair.fingerprint()));
        assert_eq!(ok.endpoint.authority, "127.0.0.1:8443");
        for bad in [
            json!({"type": "image", "server": "http://x", "certificate": pem, "alias": "a"}),
            json!({"type": "image", "server": "https://x:1", "alias": "a"}),
            json!({"type": "image", "server": "https://x:1", "certificate": "junk", "alias": "a"}),
            json!({"type": "image", "server": "https://x:1", "certificate": pem}),
            json!({"type": "image", "protocol": "simplestreams", "server": "https://x", "certificate": pem, "alias": "a"}),
            json!({"type": "image", "mode": "push", "server": "https://x", "certificate": pem, "alias": "a"}),
        ] {
            assert!(src(bad.clone()).is_err(), "{bad}");
        }
    }
}
