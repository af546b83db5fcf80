//! `kante console [REMOTE:]NAME`: the local terminal attached to an
//! instance's console in raw mode until Ctrl+a q (as lxc), or with
//! `--show-log` its log; and the `--console[=TYPE]` flag of launch, start,
//! restart and stop, which attaches after the action as lxc does.

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Result};
use kante_api::console::ConsolePost;
use kante_api::exec::ExecControl;
use kante_client::{Client, ConsoleStreams};
use tokio::signal::unix::{signal, SignalKind};

use crate::terminal;

/// What lxc prints before attaching (a raw terminal needs the `\r`).
pub const DETACH_HINT: &str = "To detach from the console, press: <ctrl>+a q\n\r";

/// lxc's reading of Ctrl+a q: Ctrl+a is held back; `q` right after it
/// detaches, any other byte is sent (and the Ctrl+a is dropped).
#[derive(Debug, Default)]
pub struct Escape {
    armed: bool,
}

impl Escape {
    /// The keys of `input` to send, and whether the user detached (keys
    /// after the `q` are dropped).
    pub fn filter(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut keys = Vec::with_capacity(input.len());
        for &b in input {
            if b == 0x01 && !self.armed {
                self.armed = true;
                continue;
            }
            if b == b'q' && self.armed {
                return (keys, true);
            }
            self.armed = false;
            keys.push(b);
        }
        (keys, false)
    }
}

/// `--console[=TYPE]` and `console --type`: `console` attaches, `vga` needs
/// a virtual machine, anything else is unknown.
pub fn check_type(kind: Option<&str>) -> Result<()> {
    match kind {
        None | Some("console") => Ok(()),
        Some("vga") => {
            bail!("Kante runs containers only: a VGA console (SPICE) needs a virtual machine")
        }
        Some(other) => bail!("Unknown console type {other:?}: console or vga"),
    }
}

/// lxc's rule for `--console` on start, stop and restart: one instance.
pub fn check_single(kind: Option<&str>, all: bool, names: &[String]) -> Result<()> {
    check_type(kind)?;
    if kind.is_some() {
        if all {
            bail!("--console can't be used with --all");
        }
        if names.len() != 1 {
            bail!("--console only works with a single instance");
        }
    }
    Ok(())
}

/// `kante console NAME [--show-log]`.
pub async fn run(c: &Client, name: &str, show_log: bool, kind: &str) -> Result<i32> {
    check_type(Some(kind))?;
    if show_log {
        if kind != "console" {
            bail!("The --show-log flag is only supported for by 'console' output type");
        }
        // lxc's layout: a heading, the log, a new line.
        let log = c.console_log(name).await?;
        let mut out = std::io::stdout();
        out.write_all(b"\nConsole log:\n\n")?;
        out.write_all(&log)?;
        out.write_all(b"\n")?;
        out.flush()?;
        return Ok(0);
    }
    attach(c, name).await
}

/// Attaches the terminal until Ctrl+a q (or the instance stops).
pub async fn attach(c: &Client, name: &str) -> Result<i32> {
    let (width, height) = terminal::size().unwrap_or((0, 0));
    let post = ConsolePost {
        width: width as i64,
        height: height as i64,
        kind: "console".into(),
    };
    let (ctl_tx, ctl_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut winch = signal(SignalKind::window_change())?;
    tokio::spawn(async move {
        while winch.recv().await.is_some() {
            if let Some((w, h)) = terminal::size() {
                if ctl_tx.send(ExecControl::resize(w, h)).is_err() {
                    break;
                }
            }
        }
    });
    // A thread of its own: a read of the terminal is not cancellable, and
    // the process exits without waiting for it.
    let (key_tx, key_rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        let mut esc = Escape::default();
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (keys, detach) = esc.filter(&buf[..n]);
            if !keys.is_empty() && key_tx.blocking_send(keys).is_err() {
                break;
            }
            if detach {
                break;
            }
        }
    });
    let raw = if std::io::stdin().is_terminal() {
        Some(terminal::RawMode::enable()?)
    } else {
        None
    };
    print!("{DETACH_HINT}");
    std::io::stdout().flush()?;
    let streams = ConsoleStreams {
        input: key_rx,
        output: Box::new(tokio::io::stdout()),
        control: Some(ctl_rx),
    };
    let result = c.console(name, post, streams).await;
    drop(raw);
    result?;
    Ok(0)
}

/// `stop --console`: the stop is asked for and the terminal attached at
/// once, to watch the shutdown; the console ends when the instance stops.
pub async fn stop_attached(
    c: &Client,
    name: &str,
    force: bool,
    timeout: i64,
    stateful: bool,
) -> Result<i32> {
    let names = [name.to_string()];
    let (stopped, attached) = tokio::join!(
        super::lifecycle::stop(c, &names, force, timeout, stateful),
        attach(c, name)
    );
    let code = stopped?;
    match attached {
        // Stopped before the console could attach: nothing left to watch.
        Err(e) if e.to_string().contains("not running") => Ok(code),
        Err(e) => Err(e),
        Ok(_) => Ok(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_a_q_detaches_as_in_lxc() {
        let mut e = Escape::default();
        assert_eq!(e.filter(b"ls\r"), (b"ls\r".to_vec(), false));
        // Split across reads, keys after the q dropped.
        assert_eq!(e.filter(b"x\x01"), (b"x".to_vec(), false));
        assert_eq!(e.filter(b"qzz"), (Vec::new(), true));
        let mut e = Escape::default();
        // Ctrl+a then another key: the key goes, the Ctrl+a does not.
        assert_eq!(e.filter(b"\x01a q"), (b"a q".to_vec(), false));
        // Ctrl+a Ctrl+a sends one Ctrl+a.
        assert_eq!(e.filter(b"\x01\x01"), (b"\x01".to_vec(), false));
    }

    #[test]
    fn console_flags_follow_lxc() {
        assert!(check_type(None).is_ok());
        assert!(check_type(Some("console")).is_ok());
        assert!(check_type(Some("vga"))
            .unwrap_err()
            .to_string()
            .contains("containers only"));
        assert!(check_type(Some("x")).is_err());
        let one = vec!["c1".to_string()];
        assert!(check_single(Some("console"), false, &one).is_ok());
        let e = check_single(Some("console"), true, &[]).unwrap_err();
        assert_eq!(e.to_string(), "--console can't be used with --all");
        let two = vec!["a".to_string(), "b".to_string()];
        let e = check_single(Some("console"), false, &two).unwrap_err();
        assert_eq!(e.to_string(), "--console only works with a single instance");
        assert!(check_single(None, false, &two).is_ok());
    }
}
