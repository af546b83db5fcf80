//! Rendering the engine's replies as LXD responses: the one place a
//! [`Reply`] becomes a status, headers and a body.

use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use kante_api::Envelope;
use kante_engine::front::{Download, FileGet, FileMeta, Op, Reply, Request};
use kante_engine::EngineError;
use serde::Serialize;
use serde_json::Value;

use crate::AppState;

/// Every handler returns this: a success response or an engine error.
pub type ApiResult = Result<Response, ApiError>;

pub struct ApiError(pub EngineError);

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0.status(), &self.0.to_string())
    }
}

fn json_response<M: Serialize>(
    status: StatusCode,
    env: &Envelope<M>,
    headers: HeaderMap,
) -> Response {
    let (status, mut body) = match serde_json::to_vec(env) {
        Ok(body) => (status, body),
        // Only a map with non-string keys fails here; say so rather than send nothing.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::to_vec(&Envelope::error(500, format!("Encoding the response: {e}")))
                .unwrap_or_default(),
        ),
    };
    body.push(b'\n');
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().extend(headers);
    resp
}

pub fn error(code: u16, message: &str) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    if code == 503 {
        // Shedding load: do not keep the refused client's connection (and fd).
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &Envelope::error(code, message), h)
}

/// 200 with `metadata`, serialised straight to the body (no `Value` tree in
/// between: a list of 500 instances is mostly allocator time otherwise).
pub fn sync<T: Serialize>(metadata: T) -> ApiResult {
    Ok(json_response(
        StatusCode::OK,
        &Envelope::sync(&metadata),
        HeaderMap::new(),
    ))
}

/// 200 with `{}`.
pub fn empty() -> ApiResult {
    Ok(json_response(
        StatusCode::OK,
        &Envelope::empty(),
        HeaderMap::new(),
    ))
}

/// 201 with a Location header and null metadata.
pub fn created(location: &str) -> ApiResult {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    Ok(json_response(StatusCode::CREATED, &Envelope::created(), h))
}

/// 202 for a background operation.
pub fn operation(op: &std::sync::Arc<Op>) -> ApiResult {
    let url = op.url();
    let meta = serde_json::to_value(op.snapshot()).unwrap_or(Value::Null);
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&url) {
        h.insert(header::LOCATION, v);
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        &Envelope::async_op(url, meta),
        h,
    ))
}

/// Hands `req` to the engine's front door and renders the reply.
pub async fn answer(s: &AppState, req: Request) -> ApiResult {
    with_etag(crate::gate::handle(s, req).await?, 0)
}

/// The response for `reply`, with its object's `ETag` if it has one.
fn with_etag(reply: Reply, recursion: u8) -> ApiResult {
    let etag = kante_engine::front::etag_of(&reply);
    let mut resp = render(reply, recursion)?;
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(&format!("\"{e}\"")).ok()) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// [`answer`] for a listing: `?recursion=0` shows URLs, more shows objects.
pub async fn listing(s: &AppState, req: Request, q: &HashMap<String, String>) -> ApiResult {
    render(
        crate::gate::handle(s, req).await?,
        crate::routes::recursion(q),
    )
}

/// The items of a listing, as URLs (`recursion` 0) or as themselves.
fn list<T: Serialize>(items: Vec<T>, recursion: u8, url: impl Fn(&T) -> String) -> ApiResult {
    if recursion >= 1 {
        return sync(items);
    }
    sync(items.iter().map(url).collect::<Vec<_>>())
}

/// The response for `reply`; `recursion` chooses how listings show.
pub fn render(reply: Reply, recursion: u8) -> ApiResult {
    match reply {
        Reply::Empty => empty(),
        Reply::Created { location } => created(&location),
        Reply::Operation(op) => operation(&op),
        Reply::OperationState(o) => sync(o),
        Reply::Operations(ops) => {
            // Grouped by status, as LXD does.
            let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for op in ops {
                let v = if recursion >= 1 {
                    serde_json::to_value(&op).unwrap_or_default()
                } else {
                    format!("/1.0/operations/{}", op.id).into()
                };
                groups.entry(op.status.to_lowercase()).or_default().push(v);
            }
            sync(groups)
        }
        Reply::Server(x) => sync(x),
        Reply::ServerUntrusted(x) => sync(x),
        Reply::Certificates(v) => list(v, recursion, |c| {
            format!("/1.0/certificates/{}", c.fingerprint)
        }),
        Reply::Certificate(x) => sync(x),
        Reply::UiSession(x) => crate::ui::session_response(&x),
        Reply::InstanceNames(names) => sync(
            names
                .iter()
                .map(|n| format!("/1.0/instances/{n}"))
                .collect::<Vec<_>>(),
        ),
        Reply::Instances(v) => list(v, recursion, |i| format!("/1.0/instances/{}", i.name)),
        Reply::InstancesFull(v) => sync(v),
        Reply::Instance(x) => sync(x),
        Reply::InstanceFull(x) => sync(x),
        Reply::InstanceState(x) => sync(x),
        Reply::Changes(x) => sync(x),
        Reply::ProfileChanges(x) => sync(x),
        Reply::Snapshots {
            instance,
            snapshots,
        } => list(snapshots, recursion, |sn| {
            format!("/1.0/instances/{instance}/snapshots/{}", sn.name)
        }),
        Reply::Snapshot(x) => sync(x),
        Reply::Backups { instance, backups } => list(backups, recursion, |b| {
            format!("/1.0/instances/{instance}/backups/{}", b.name)
        }),
        Reply::Backup(x) => sync(x),
        Reply::Logs { instance, files } => sync(
            files
                .iter()
                .map(|f| format!("/1.0/instances/{instance}/logs/{f}"))
                .collect::<Vec<_>>(),
        ),
        Reply::Text(body) => Ok(([(header::CONTENT_TYPE, "text/plain")], body).into_response()),
        Reply::Binary(body) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
        }
        Reply::File { path, got } => Ok(file(&path, got)),
        Reply::Download(d) => Ok(download(d)),
        Reply::Images(v) => list(v, recursion, |i| format!("/1.0/images/{}", i.fingerprint)),
        Reply::Image(x) => sync(x),
        Reply::Aliases(v) => list(v, recursion, |a| format!("/1.0/images/aliases/{}", a.name)),
        Reply::Alias(x) => sync(x),
        Reply::Profiles(v) => list(v, recursion, |p| format!("/1.0/profiles/{}", p.name)),
        Reply::Profile(x) => sync(x),
        Reply::Networks(v) => list(v, recursion, |n| format!("/1.0/networks/{}", n.name)),
        Reply::Network(x) => sync(x),
        Reply::NetworkState(x) => sync(x),
        Reply::Leases(x) => sync(x),
        Reply::Pools(v) => list(v, recursion, |p| format!("/1.0/storage-pools/{}", p.name)),
        Reply::Pool(x) => sync(x),
        Reply::Volumes { pool, volumes } => list(volumes, recursion, |v| {
            format!("/1.0/storage-pools/{pool}/volumes/{}/{}", v.kind, v.name)
        }),
        Reply::Volume(x) => sync(x),
        Reply::VolumeSnapshots {
            pool,
            volume,
            snapshots,
        } => list(snapshots, recursion, |x| {
            format!(
                "/1.0/storage-pools/{pool}/volumes/custom/{volume}/snapshots/{}",
                x.name
            )
        }),
        Reply::VolumeSnapshot(x) => sync(x),
        Reply::Metrics(text) => Ok((
            [(header::CONTENT_TYPE, kante_engine::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response()),
        Reply::Resources(x) => sync(x),
        Reply::PoolResources(x) => sync(x),
        Reply::Projects(v) => list(v, recursion, |p| format!("/1.0/projects/{}", p.name)),
        Reply::Project(x) => sync(x),
        Reply::Warnings(v) => list(v, recursion, |w| {
            format!("/1.0/warnings/{}", w["uuid"].as_str().unwrap_or_default())
        }),
        Reply::Cluster(x) => sync(x),
        Reply::ClusterMembers(v) => list(v, recursion, |m| {
            format!("/1.0/cluster/members/{}", m.server_name)
        }),
        Reply::ClusterMember(x) => sync(x),
        Reply::ClusterGroups(v) => {
            list(v, recursion, |g| format!("/1.0/cluster/groups/{}", g.name))
        }
        Reply::ClusterGroup(x) => sync(x),
        Reply::ClusterMemberState(x) => sync(x),
        Reply::ClusterAccepted(x) => sync(x),
        Reply::Services(v) => sync(v),
        other @ (Reply::Socket(_) | Reply::Events(_)) => Err(ApiError(EngineError::internal(
            format!("a {} reply has no HTTP rendering", other.kind()),
        ))),
    }
}

/// LXD's `X-LXD-*` headers of a file read from an instance.
fn meta_headers(h: &mut HeaderMap, m: &FileMeta) {
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set("X-LXD-uid", m.uid.to_string());
    set("X-LXD-gid", m.gid.to_string());
    set("X-LXD-mode", format!("{:04o}", m.mode));
    set("X-LXD-type", m.kind.as_str().to_string());
    set(
        "X-LXD-modified",
        m.modified.format("%Y-%m-%d %H:%M:%S %z UTC").to_string(),
    );
}

/// A file (streamed), a symlink (its target) or a directory (a JSON list
/// of names) read at `path` in an instance.
fn file(path: &str, got: FileGet) -> Response {
    let base = path.rsplit('/').next().unwrap_or("");
    let inline = HeaderValue::from_str(&format!("inline;filename={base}")).ok();
    let octets = HeaderValue::from_static("application/octet-stream");
    match got {
        FileGet::File(f, meta) => {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let stream = file_stream(tokio::fs::File::from_std(f), 64 * 1024);
            let mut resp = Response::new(Body::from_stream(stream));
            let h = resp.headers_mut();
            meta_headers(h, &meta);
            h.insert(header::CONTENT_TYPE, octets);
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            if let Some(v) = inline {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        FileGet::Symlink(target, meta) => {
            let mut resp = Response::new(Body::from(target));
            let h = resp.headers_mut();
            meta_headers(h, &meta);
            h.insert(header::CONTENT_TYPE, octets);
            if let Some(v) = inline {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        FileGet::Directory(names, meta) => {
            let mut body =
                serde_json::to_vec(&Envelope::sync(serde_json::json!(names))).unwrap_or_default();
            body.push(b'\n');
            let mut resp = body.into_response();
            let h = resp.headers_mut();
            meta_headers(h, &meta);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
    }
}

/// One file as the body (with its length), several as
/// `multipart/form-data` (a split image's metadata and rootfs).
fn download(d: Download) -> Response {
    let disposition = match d.disposition {
        kante_engine::front::Disposition::Inline => "inline",
        kante_engine::front::Disposition::Attachment => "attachment",
    };
    let mut parts = d.parts;
    if parts.len() == 1 {
        let p = parts.remove(0);
        let mut resp = Response::new(Body::from_stream(file_stream(p.file, 256 * 1024)));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(p.len));
        if let Ok(v) = HeaderValue::from_str(&format!("{disposition};filename={}", p.filename)) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        return resp;
    }
    let boundary = format!("kante-{}", kante_engine::front::random_hex(16));
    let mut chunks: Vec<futures_util::stream::BoxStream<'static, std::io::Result<Vec<u8>>>> =
        Vec::new();
    let once = |b: Vec<u8>| futures_util::stream::once(async move { Ok(b) }).boxed();
    for p in parts {
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            p.field, p.filename
        );
        chunks.push(once(head.into_bytes()));
        chunks.push(file_stream(p.file, 256 * 1024).boxed());
        chunks.push(once(b"\r\n".to_vec()));
    }
    chunks.push(once(format!("--{boundary}--\r\n").into_bytes()));
    let mut resp = Response::new(Body::from_stream(
        futures_util::stream::iter(chunks).flatten(),
    ));
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}")) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// Streams a file in `chunk`-byte reads without holding it in memory.
fn file_stream(
    file: tokio::fs::File,
    chunk: usize,
) -> impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures_util::stream::unfold(file, move |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; chunk];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}
