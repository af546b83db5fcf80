//! `kante exec`: run a command in an instance, interactively or streamed.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::Result;
use kante_api::exec::{ExecControl, ExecPost};
use kante_client::{Client, ClientError, ExecStreams};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;

use super::parse_kv;
use crate::cli::ExecArgs;
use crate::terminal;

/// Signals forwarded to the remote command, as lxc does.
const FORWARDED: [libc::c_int; 8] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGTSTP,
    libc::SIGCONT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// lxc's rule: a pty when both stdin and stdout are terminals, unless forced.
pub fn want_pty(force_on: bool, force_off: bool, stdin_tty: bool, stdout_tty: bool) -> bool {
    if force_off {
        false
    } else {
        force_on || (stdin_tty && stdout_tty)
    }
}

/// The exec request: the local `TERM` is forwarded, then `--env` entries.
pub fn build_request(
    args: &ExecArgs,
    interactive: bool,
    size: Option<(u16, u16)>,
) -> Result<ExecPost> {
    let mut env = BTreeMap::new();
    if let Ok(term) = std::env::var("TERM") {
        env.insert("TERM".to_string(), term);
    }
    for kv in &args.env {
        let (k, v) = parse_kv(kv)?;
        env.insert(k, v);
    }
    let (width, height) = size.unwrap_or((0, 0));
    Ok(ExecPost {
        command: args.command.clone(),
        environment: env,
        wait_for_websocket: true,
        interactive,
        width: width as i64,
        height: height as i64,
        record_output: false,
        user: args.user.unwrap_or(0) as i64,
        group: args.group.unwrap_or(0) as i64,
        cwd: args.cwd.clone().unwrap_or_default(),
    })
}

fn forward_signals(tx: &UnboundedSender<ExecControl>, interactive: bool) -> Result<()> {
    for sig in FORWARDED {
        let mut stream = signal(SignalKind::from_raw(sig))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(ExecControl::signal(sig)).is_err() {
                    break;
                }
            }
        });
    }
    if interactive {
        let mut winch = signal(SignalKind::window_change())?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some((w, h)) = terminal::size() {
                    if tx.send(ExecControl::resize(w, h)).is_err() {
                        break;
                    }
                }
            }
        });
    }
    Ok(())
}

pub async fn run(c: &Client, args: ExecArgs) -> Result<i32> {
    let stdin_tty = std::io::stdin().is_terminal();
    let interactive = want_pty(
        args.force_interactive || args.mode == "interactive",
        args.force_noninteractive || args.mode == "non-interactive",
        stdin_tty && !args.disable_stdin,
        std::io::stdout().is_terminal(),
    );
    let size = if interactive { terminal::size() } else { None };
    let post = build_request(&args, interactive, size)?;

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    forward_signals(&tx, interactive)?;
    // -n: the command's stdin ends at once, as /dev/null would.
    let stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>> = if args.disable_stdin {
        None
    } else {
        Some(Box::new(tokio::io::stdin()))
    };
    let streams = ExecStreams {
        stdin,
        stdout: Box::new(tokio::io::stdout()),
        stderr: Box::new(tokio::io::stderr()),
        control: Some(rx),
    };
    // Raw mode only for the command's lifetime; the guard restores the
    // terminal on every path out of here (and the panic hook on panics).
    let raw = if interactive && stdin_tty && !args.disable_stdin {
        Some(terminal::RawMode::enable()?)
    } else {
        None
    };
    let result = c.exec(&args.name, post, streams).await;
    drop(raw);
    match result {
        Ok(code) => Ok(code),
        // Our stdout went away (`kante exec … | head`): end quietly like a SIGPIPE death.
        Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(128 + libc::SIGPIPE)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pty_rules() {
        assert!(want_pty(false, false, true, true));
        assert!(!want_pty(false, false, true, false));
        assert!(!want_pty(false, true, true, true));
        assert!(want_pty(true, false, false, false));
    }

    #[test]
    fn request_carries_env_user_and_size() {
        let args = ExecArgs {
            name: "c1".into(),
            env: vec!["A=1".into(), "TERM=dumb".into()],
            cwd: Some("/tmp".into()),
            user: Some(1000),
            group: None,
            force_noninteractive: false,
            force_interactive: false,
            mode: "auto".into(),
            disable_stdin: false,
            command: vec!["id".into()],
        };
        let p = build_request(&args, true, Some((120, 40))).unwrap();
        assert_eq!(p.environment["A"], "1");
        assert_eq!(p.environment["TERM"], "dumb");
        assert_eq!((p.width, p.height, p.user, p.group), (120, 40, 1000, 0));
        assert_eq!(p.cwd, "/tmp");
        assert!(p.wait_for_websocket && p.interactive);
        assert!(build_request(
            &ExecArgs {
                env: vec!["bad".into()],
                ..args
            },
            false,
            None
        )
        .is_err());
    }
}
