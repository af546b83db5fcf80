//! A kept-alive connection survives a request whose body its handler never
//! reads. Ansible's LXD client sends `null` as the body of every request,
//! GET and DELETE included, with Python's `http.client`, which writes the
//! headers and the body in two writes and reuses the connection: a server
//! that answers (say, 404 for a missing profile) and closes before the
//! body arrives makes the body's write fail (`EPIPE`), and the module
//! reports "cannot connect to the LXD server".

use std::time::Duration;

use kante_engine::testing::TestHost;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Reads one response (headers and a `Content-Length` body); its status
/// line and body.
async fn response(s: &mut UnixStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("a Content-Length");
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed in the middle of a body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
            return (head.lines().next().unwrap_or_default().to_string(), body);
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection was closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn an_unread_body_arriving_late_keeps_the_connection() {
    let host = TestHost::new();
    let engine = host.open().await;
    let listener = kante_http::claim_socket(&engine.paths.socket())
        .await
        .unwrap();
    let serving = tokio::spawn(kante_http::serve_listener(
        engine.clone(),
        listener,
        std::future::pending(),
    ));
    let mut s = UnixStream::connect(engine.paths.socket()).await.unwrap();
    for (method, path, status) in [
        ("GET", "/1.0/profiles/missing", "404"),
        ("GET", "/1.0/profiles/default", "200"),
        ("DELETE", "/1.0/instances/missing", "404"),
        ("GET", "/1.0", "200"),
    ] {
        // Headers first; the body a moment later, as http.client does.
        let head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(b"null")
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: the body's write failed: {e}"));
        let (line, body) = response(&mut s).await;
        assert!(line.contains(status), "{method} {path}: {line}\n{body}");
    }
    serving.abort();
}
