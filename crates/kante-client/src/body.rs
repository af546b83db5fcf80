//! Streamed request bodies (image uploads, file pushes) with progress.

use std::collections::VecDeque;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::fs::File;
use tokio::io::AsyncReadExt;

use crate::client::ReqBody;

/// A progress callback: `(bytes sent, total bytes)`.
pub type ProgressFn = Box<dyn FnMut(u64, u64) + Send>;

const CHUNK: usize = 256 * 1024;

/// One piece of a streamed body.
pub(crate) enum Segment {
    Bytes(Bytes),
    File(PathBuf),
}

struct State {
    segments: VecDeque<Segment>,
    current: Option<File>,
    sent: u64,
    total: u64,
    progress: ProgressFn,
}

/// Builds a chunked body from segments; returns it with its total size.
/// Files are opened up front so a missing file fails before the request.
pub(crate) async fn segments_body(
    segments: Vec<Segment>,
    mut progress: ProgressFn,
) -> std::io::Result<(ReqBody, u64)> {
    let mut total = 0u64;
    for seg in &segments {
        total += match seg {
            Segment::Bytes(b) => b.len() as u64,
            Segment::File(p) => tokio::fs::metadata(p).await?.len(),
        };
    }
    progress(0, total);
    let state = State {
        segments: segments.into(),
        current: None,
        sent: 0,
        total,
        progress,
    };
    let s = stream::unfold(state, |mut st| async move {
        loop {
            if let Some(file) = st.current.as_mut() {
                let mut buf = BytesMut::with_capacity(CHUNK);
                match file.read_buf(&mut buf).await {
                    Ok(0) => {
                        st.current = None;
                        continue;
                    }
                    Ok(n) => {
                        st.sent += n as u64;
                        (st.progress)(st.sent, st.total);
                        return Some((Ok(Frame::data(buf.freeze())), st));
                    }
                    Err(e) => {
                        st.segments.clear();
                        st.current = None;
                        return Some((Err(e), st));
                    }
                }
            }
            match st.segments.pop_front()? {
                Segment::Bytes(b) => {
                    st.sent += b.len() as u64;
                    (st.progress)(st.sent, st.total);
                    return Some((Ok(Frame::data(b)), st));
                }
                Segment::File(p) => match File::open(&p).await {
                    Ok(f) => st.current = Some(f),
                    Err(e) => {
                        st.segments.clear();
                        return Some((Err(e), st));
                    }
                },
            }
        }
    });
    Ok((StreamBody::new(s).boxed_unsync(), total))
}

/// A multipart/form-data body from named file parts (`metadata`, `rootfs`).
pub(crate) fn multipart_segments(boundary: &str, parts: &[(&str, PathBuf)]) -> Vec<Segment> {
    let mut segs = Vec::new();
    for (name, path) in parts {
        let filename = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string());
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            filename.replace('"', "")
        );
        segs.push(Segment::Bytes(Bytes::from(head)));
        segs.push(Segment::File(path.clone()));
        segs.push(Segment::Bytes(Bytes::from_static(b"\r\n")));
    }
    segs.push(Segment::Bytes(Bytes::from(format!("--{boundary}--\r\n"))));
    segs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn streams_segments_in_order_with_progress() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.bin");
        std::fs::write(&f, vec![7u8; 300_000]).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let segs = multipart_segments("XYZ", &[("metadata", f.clone())]);
        let (body, total) =
            segments_body(segs, Box::new(move |a, b| s2.lock().unwrap().push((a, b))))
                .await
                .unwrap();
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len() as u64, total);
        let text = String::from_utf8_lossy(&bytes[..120]).to_string();
        assert!(text.starts_with(
            "--XYZ\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"a.bin\""
        ));
        assert!(bytes.ends_with(b"\r\n--XYZ--\r\n"));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.first(), Some(&(0, total)));
        assert_eq!(seen.last(), Some(&(total, total)));
    }

    #[tokio::test]
    async fn missing_file_fails_early() {
        let r = segments_body(
            vec![Segment::File("/nonexistent/x".into())],
            Box::new(|_, _| {}),
        )
        .await;
        assert!(r.is_err());
    }
}
