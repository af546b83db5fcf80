//! The connection to the daemon: HTTP/1.1 over its unix socket or over
//! TLS (`transport.rs`), and the generic verbs that return the decoded response envelope.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ClientError, Result};
use crate::transport::{Conn, Https, HttpsTarget, Transport};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, ETAG, HOST, IF_MATCH, LOCATION};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use kante_api::{Envelope, ResponseType};
use kante_tls::rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Default daemon directory; `$KANTE_DIR` overrides it.
pub const DEFAULT_KANTE_DIR: &str = "/var/lib/kante";

/// Request bodies: fixed bytes or a stream (sent chunked).
pub(crate) type ReqBody = UnsyncBoxBody<Bytes, std::io::Error>;

pub(crate) fn empty_body() -> ReqBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn full_body(data: impl Into<Bytes>) -> ReqBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A handle on the daemon, local (unix socket) or remote (HTTPS). Cheap to
/// clone; every request opens its own connection (as `lxc` does), so a
/// `Client` can be shared freely.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
    /// `target=MEMBER`, added to every request's query ([`Client::with_target`]).
    target: Option<String>,
}

/// A decoded JSON response: HTTP status, headers and the 7-field envelope.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub envelope: Envelope,
}

impl ApiResponse {
    fn header(&self, name: hyper::header::HeaderName) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The `ETag` header, quotes included, ready to be echoed as `If-Match`.
    pub fn etag(&self) -> Option<String> {
        self.header(ETAG)
    }

    /// The `Location` header (201 creates and 202 operations).
    pub fn location(&self) -> Option<String> {
        self.header(LOCATION)
    }

    /// The id of the background operation of an async response.
    pub fn operation_id(&self) -> Option<String> {
        let url = if self.envelope.operation.is_empty() {
            self.location()?
        } else {
            self.envelope.operation.clone()
        };
        operation_id_from_url(&url)
    }

    /// Decodes `metadata` into `T`.
    pub fn metadata<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_value(self.envelope.metadata.clone())?)
    }

    pub fn into_metadata<T: DeserializeOwned>(self) -> Result<T> {
        Ok(serde_json::from_value(self.envelope.metadata)?)
    }
}

/// `/1.0/operations/<id>` (possibly with a query) to `<id>`.
pub(crate) fn operation_id_from_url(url: &str) -> Option<String> {
    let path = url.split('?').next().unwrap_or(url);
    let id = path.trim_end_matches('/').rsplit('/').next()?;
    (!id.is_empty()).then(|| id.to_string())
}

impl Client {
    /// The local daemon: `$KANTE_DIR/unix.socket`, else `/var/lib/kante/unix.socket`.
    pub fn local() -> Client {
        let dir = std::env::var_os("KANTE_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KANTE_DIR));
        Client::with_socket(dir.join("unix.socket"))
    }

    pub fn with_socket(path: impl Into<PathBuf>) -> Client {
        Client {
            transport: Transport::Unix(path.into()),
            target: None,
        }
    }

    /// A remote daemon over HTTPS: its certificate must match
    /// `target.pin` (a mismatch is `ClientError::CertificateMismatch`), and
    /// `target.identity` is shown as the client's certificate.
    pub fn https(target: HttpsTarget) -> Result<Client> {
        Ok(Client {
            transport: Transport::Https(Arc::new(Https::new(target)?)),
            target: None,
        })
    }

    /// A server with a public certificate over HTTPS (an image server with
    /// no pinned certificate): verified against the CA certificates of
    /// `bundle` (PEM, as the system's bundle is); `target.pin` is unused.
    pub fn https_with_roots(target: HttpsTarget, bundle: &[u8]) -> Result<Client> {
        Ok(Client {
            transport: Transport::Https(Arc::new(Https::with_roots(target, bundle)?)),
            target: None,
        })
    }

    /// The same daemon, every request sent to cluster member `member`
    /// (`?target=MEMBER`, as lxc's `--target` does).
    pub fn with_target(&self, member: &str) -> Client {
        Client {
            transport: self.transport.clone(),
            target: Some(url::query(member)),
        }
    }

    /// The unix socket of a local client.
    pub fn socket_path(&self) -> Option<&Path> {
        match &self.transport {
            Transport::Unix(p) => Some(p),
            Transport::Https(_) => None,
        }
    }

    /// The certificate an HTTPS server presented on the last connection
    /// (to show and pin on first contact); `None` for the unix socket.
    pub fn server_certificate(&self) -> Option<CertificateDer<'static>> {
        match &self.transport {
            Transport::Unix(_) => None,
            Transport::Https(h) => h.presented(),
        }
    }

    pub(crate) async fn connect(&self) -> Result<Conn> {
        self.transport.connect().await
    }

    /// A websocket URL for an API path on this daemon.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        self.transport.ws_url(path)
    }

    /// Sends one request on a fresh connection and returns the raw response;
    /// the body can then be streamed.
    pub(crate) async fn send(&self, mut req: Request<ReqBody>) -> Result<Response<Incoming>> {
        let stream = self.connect().await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection task ends by itself once the response body is read or dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let host = HeaderValue::from_str(&self.transport.host())
            .unwrap_or_else(|_| HeaderValue::from_static("unix.socket"));
        req.headers_mut().insert(HOST, host);
        Ok(sender.send_request(req).await?)
    }

    /// Builds and sends a request with optional extra headers.
    pub(crate) async fn send_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: ReqBody,
    ) -> Result<Response<Incoming>> {
        let targeted;
        let path = match &self.target {
            Some(member) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                targeted = format!("{path}{sep}target={member}");
                targeted.as_str()
            }
            None => path,
        };
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        let req = builder
            .body(body)
            .map_err(|e| ClientError::Protocol(format!("bad request {path}: {e}")))?;
        self.send(req).await
    }

    /// Any request with an optional JSON body; decodes the envelope and turns
    /// error envelopes into `ClientError::Api`.
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&T>,
        headers: &[(&str, String)],
    ) -> Result<ApiResponse> {
        let mut all: Vec<(&str, String)> = headers.to_vec();
        let body = match body {
            Some(b) => {
                all.push((CONTENT_TYPE.as_str(), "application/json".to_string()));
                full_body(serde_json::to_vec(b)?)
            }
            None => empty_body(),
        };
        let resp = self.send_with(method, path, &all, body).await?;
        decode_response(resp).await
    }

    pub async fn get(&self, path: &str) -> Result<ApiResponse> {
        self.request::<()>(Method::GET, path, None, &[]).await
    }

    pub async fn post<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> Result<ApiResponse> {
        self.request(Method::POST, path, Some(body), &[]).await
    }

    pub async fn put<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> Result<ApiResponse> {
        self.request(Method::PUT, path, Some(body), &[]).await
    }

    /// PUT with `If-Match` when an ETag from an earlier GET is known.
    pub async fn put_if_match<T: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &T,
        etag: Option<&str>,
    ) -> Result<ApiResponse> {
        let headers: Vec<(&str, String)> = etag
            .map(|e| (IF_MATCH.as_str(), e.to_string()))
            .into_iter()
            .collect();
        self.request(Method::PUT, path, Some(body), &headers).await
    }

    pub async fn patch<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> Result<ApiResponse> {
        self.request(Method::PATCH, path, Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Result<ApiResponse> {
        self.request::<()>(Method::DELETE, path, None, &[]).await
    }

    /// GET and return the raw body of a success (an error still becomes
    /// `ClientError::Api`); for timing the daemon apart from any decoding.
    pub async fn get_body(&self, path: &str) -> Result<Bytes> {
        let (parts, bytes) = self.get_raw(path).await?;
        if !parts.status.is_success() {
            decode_parts(parts, &bytes)?;
        }
        Ok(bytes)
    }

    /// GET and decode `metadata` as `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let (parts, bytes) = self.get_raw(path).await?;
        decode_typed(parts, &bytes)
    }

    /// A GET's status, headers and whole body, undecoded.
    async fn get_raw(&self, path: &str) -> Result<(hyper::http::response::Parts, Bytes)> {
        read_body(self.send_with(Method::GET, path, &[], empty_body()).await?).await
    }
}

/// A success envelope whose metadata is read straight into its type.
#[derive(serde::Deserialize)]
struct TypedEnvelope<T> {
    #[serde(rename = "type")]
    kind: ResponseType,
    metadata: T,
}

/// Decodes a response's metadata as `T` in one pass when it is a success;
/// anything else (an error envelope, metadata of another shape) goes through
/// the general path, which gives the precise error.
pub(crate) fn decode_typed<T: DeserializeOwned>(
    parts: hyper::http::response::Parts,
    bytes: &[u8],
) -> Result<T> {
    if parts.status.is_success() {
        if let Ok(env) = serde_json::from_slice::<TypedEnvelope<T>>(bytes) {
            if env.kind != ResponseType::Error {
                return Ok(env.metadata);
            }
        }
    }
    decode_parts(parts, bytes)?.into_metadata()
}

/// Reads a whole body.
pub(crate) async fn read_body(
    resp: Response<Incoming>,
) -> Result<(hyper::http::response::Parts, Bytes)> {
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok((parts, bytes))
}

/// Turns an HTTP response into an `ApiResponse`, or the error it carries.
pub(crate) async fn decode_response(resp: Response<Incoming>) -> Result<ApiResponse> {
    let (parts, bytes) = read_body(resp).await?;
    decode_parts(parts, &bytes)
}

pub(crate) fn decode_parts(
    parts: hyper::http::response::Parts,
    bytes: &[u8],
) -> Result<ApiResponse> {
    let status = parts.status.as_u16();
    let envelope: Envelope = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(_) if status >= 400 => {
            // A non-JSON error (a proxy, a panic page): keep the text as the message.
            let text = String::from_utf8_lossy(bytes).trim().to_string();
            let message = if text.is_empty() {
                parts
                    .status
                    .canonical_reason()
                    .unwrap_or("Request failed")
                    .to_string()
            } else {
                text
            };
            return Err(ClientError::Api { status, message });
        }
        Err(e) => return Err(ClientError::Json(e)),
    };
    if envelope.kind == ResponseType::Error || status >= 400 {
        let message = if envelope.error.is_empty() {
            parts
                .status
                .canonical_reason()
                .unwrap_or("Request failed")
                .to_string()
        } else {
            envelope.error
        };
        let status = if status >= 400 {
            status
        } else {
            envelope.error_code
        };
        return Err(ClientError::Api { status, message });
    }
    Ok(ApiResponse {
        status,
        headers: parts.headers,
        envelope,
    })
}

/// Percent-encoding for path segments and query values.
pub(crate) mod url {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

    /// Everything but RFC 3986 unreserved characters.
    const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');

    /// One path segment (an instance name, a fingerprint).
    pub fn seg(s: &str) -> String {
        utf8_percent_encode(s, COMPONENT).to_string()
    }

    /// A name that may contain `/` (image aliases such as `debian/12`): each
    /// part is escaped and the slashes stay, which any router decodes.
    pub fn slashed(s: &str) -> String {
        s.split('/').map(seg).collect::<Vec<_>>().join("/")
    }

    /// A query value.
    pub fn query(s: &str) -> String {
        utf8_percent_encode(s, COMPONENT).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_come_from_urls() {
        assert_eq!(
            operation_id_from_url("/1.0/operations/abc-1").as_deref(),
            Some("abc-1")
        );
        assert_eq!(
            operation_id_from_url("/1.0/operations/abc?project=x").as_deref(),
            Some("abc")
        );
        assert_eq!(operation_id_from_url(""), None);
    }

    #[test]
    fn url_escaping() {
        assert_eq!(url::seg("c1"), "c1");
        assert_eq!(url::seg("a b/c"), "a%20b%2Fc");
        assert_eq!(url::slashed("debian/12"), "debian/12");
        assert_eq!(url::query("/root/my file"), "%2Froot%2Fmy%20file");
    }

    #[test]
    fn local_socket_follows_kante_dir() {
        // Only the pure part: with_socket keeps the path as given.
        let c = Client::with_socket("/tmp/x/unix.socket");
        assert_eq!(c.socket_path(), Some(Path::new("/tmp/x/unix.socket")));
    }

    fn parts(status: u16) -> hyper::http::response::Parts {
        Response::builder()
            .status(status)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn typed_decoding_reads_success_and_keeps_errors() {
        let ok = br#"{"type":"sync","status":"Success","status_code":200,"operation":"",
            "error_code":0,"error":"","metadata":["/1.0/instances/a"]}"#;
        let v: Vec<String> = decode_typed(parts(200), ok).unwrap();
        assert_eq!(v, vec!["/1.0/instances/a".to_string()]);

        let err = br#"{"type":"error","status":"","status_code":0,"operation":"",
            "error_code":404,"error":"Instance not found","metadata":null}"#;
        match decode_typed::<Vec<String>>(parts(404), err) {
            Err(ClientError::Api { status, message }) => {
                assert_eq!(status, 404);
                assert_eq!(message, "Instance not found");
            }
            other => panic!("expected an API error, got {other:?}"),
        }

        // Metadata of another shape is a decoding error, not a silent default.
        assert!(matches!(
            decode_typed::<Vec<u32>>(parts(200), ok),
            Err(ClientError::Json(_))
        ));
    }
}
