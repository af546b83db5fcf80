//! Running the tools that write and read sections (`tar`, `btrfs send`,
//! `btrfs receive`) with their standard output or input connected to a
//! stream: killed with the daemon, waited for on the calling thread, their
//! standard error kept (bounded) for the error message.

use std::io::{self, Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use crate::{dies_with_daemon, Result, StorageError};

const IO_BUF: usize = 256 << 10;
/// Most standard error kept per tool.
const STDERR_KEPT: usize = 64 << 10;

fn collect_stderr(child: &mut Child) -> JoinHandle<Vec<u8>> {
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut s) = stderr {
            let mut buf = [0u8; 8192];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        kept
    })
}

/// The most telling line of a tool's standard error.
fn telling_line(err: &[u8]) -> String {
    let err = String::from_utf8_lossy(err);
    err.lines()
        .find(|l| l.contains("ERROR"))
        .or_else(|| err.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("no error output")
        .trim()
        .to_string()
}

fn spawn(cmd: &mut Command, what: &str, stdin: Stdio, stdout: Stdio) -> Result<Child> {
    dies_with_daemon(cmd)
        .env("LC_ALL", "C")
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StorageError::Unsupported(format!("{what}: the tool is not installed"))
            } else {
                StorageError::io(format!("starting {what}"))(e)
            }
        })
}

/// Runs `cmd`, copying its standard output to `out`. A failing write
/// (the stream) stops the tool and is the error; otherwise the tool's exit
/// status decides.
pub(crate) fn run_to(cmd: &mut Command, what: &str, out: &mut dyn Write) -> Result<()> {
    let mut child = spawn(cmd, what, Stdio::null(), Stdio::piped())?;
    let stderr = collect_stderr(&mut child);
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut buf = vec![0u8; IO_BUF];
    let copied: io::Result<()> = loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        if let Err(e) = out.write_all(&buf[..n]) {
            break Err(e);
        }
    };
    drop(stdout);
    if copied.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(StorageError::io(format!("waiting for {what}")));
    let err = stderr.join().unwrap_or_default();
    copied.map_err(StorageError::io(format!("streaming {what}")))?;
    let status = status?;
    if !status.success() {
        return Err(StorageError::Command(format!(
            "{what} failed ({status}): {}",
            telling_line(&err)
        )));
    }
    Ok(())
}

/// Runs `cmd` with `input` (read to its end) as its standard input. A
/// failing read (the stream) stops the tool and is the error; a tool that
/// stops reading early or fails is an error too.
pub(crate) fn run_from(cmd: &mut Command, what: &str, input: &mut dyn Read) -> Result<()> {
    let mut child = spawn(cmd, what, Stdio::piped(), Stdio::null())?;
    let stderr = collect_stderr(&mut child);
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut buf = vec![0u8; IO_BUF];
    // Ok(true): the tool closed its input before the end.
    let fed: io::Result<bool> = loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        match stdin.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break Ok(true),
            Err(e) => break Err(e),
        }
    };
    drop(stdin);
    if fed.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(StorageError::io(format!("waiting for {what}")));
    let err = stderr.join().unwrap_or_default();
    let hung_up = match fed {
        Ok(h) => h,
        Err(e) => {
            return Err(StorageError::Stream(format!("feeding {what}: {e}")));
        }
    };
    let status = status?;
    if !status.success() {
        return Err(StorageError::Stream(format!(
            "{what} failed ({status}): {}",
            telling_line(&err)
        )));
    }
    if hung_up {
        return Err(StorageError::Stream(format!(
            "{what} stopped reading before the end of its section"
        )));
    }
    Ok(())
}
