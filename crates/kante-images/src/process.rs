//! Running external tools (tar, unsquashfs, debootstrap, chroot ...) with
//! useful error messages.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::error::ImageError;

/// First non-empty line of `primary` (else of `fallback`), plus the last line
/// when it differs: tools often print a warning first and the real error last.
pub(crate) fn first_line(primary: &[u8], fallback: &[u8]) -> String {
    for text in [primary, fallback] {
        let text = String::from_utf8_lossy(text);
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if let Some(first) = lines.next() {
            return match lines.next_back() {
                Some(last) if last != first => format!("{first} (… {last})"),
                _ => first.to_string(),
            };
        }
    }
    "no error output".into()
}

fn status_text(status: ExitStatus) -> String {
    match status.code() {
        Some(c) => format!("exit status {c}"),
        None => format!("{status}"),
    }
}

/// Maps a spawn failure: a missing binary gets a hint about the package.
pub(crate) fn spawn_error(tool: &str, package: &str, e: std::io::Error) -> ImageError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ImageError::MissingTool {
            tool: tool.into(),
            hint: format!("install it with `apt-get install {package}`"),
        }
    } else {
        ImageError::io(format!("starting {tool}"), e)
    }
}

/// Runs `cmd` to completion, returning stdout; a failure carries stderr's first line.
pub(crate) fn run(cmd: &mut Command, tool: &str, package: &str) -> Result<Vec<u8>, ImageError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(tool, package, e))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(ImageError::tool(
            tool,
            format!(
                "{}: {}",
                status_text(out.status),
                first_line(&out.stderr, &out.stdout)
            ),
        ))
    }
}

/// Collects a child's stderr on a thread (so a chatty child never blocks on a
/// full pipe), keeping at most `limit` bytes.
pub(crate) fn collect_stderr(child: &mut Child, limit: usize) -> JoinHandle<Vec<u8>> {
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut s) = stderr {
            let mut buf = [0u8; 8192];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        kept
    })
}

/// Runs `cmd`, handing every stdout/stderr line to `on_line` as it arrives.
/// On failure the error carries the last lines of output.
pub(crate) fn run_streaming(
    cmd: &mut Command,
    tool: &str,
    package: &str,
    on_line: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(tool, package, e))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for pipe in pipes.into_iter().flatten() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut line = Vec::new();
            while let Ok(n) = r.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                if tx.send(text).is_err() {
                    break;
                }
                line.clear();
            }
        }));
    }
    drop(tx);
    let mut tail: VecDeque<String> = VecDeque::new();
    for line in rx {
        on_line(&line);
        if tail.len() == 8 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child
        .wait()
        .map_err(|e| ImageError::io(format!("waiting for {tool}"), e))?;
    if status.success() {
        Ok(())
    } else {
        let tail: Vec<String> = tail.into_iter().filter(|l| !l.trim().is_empty()).collect();
        Err(ImageError::tool(
            tool,
            format!("{}: {}", status_text(status), tail.join(" | ")),
        ))
    }
}
