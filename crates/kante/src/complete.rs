//! Shell completion (`kante completion bash|zsh|fish`): clap's dynamic
//! completion, whose registration script calls `kante` back for every Tab,
//! so instance, profile, network, pool, image and remote names come from
//! the daemon (or the client's configuration) at that moment.
//!
//! A completer asks the remote named in the word being completed
//! (`REMOTE:pre`), else the default remote, with a short deadline: a
//! daemon that is down or slow gives no candidates, never a hang.

use std::ffi::OsStr;
use std::time::Duration;

use clap::CommandFactory;
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use clap_complete::env::CompleteEnv;

use crate::cli::Cli;
use crate::remote::{self, Config};

/// The variable the registration scripts set when they call `kante` back.
pub const VAR: &str = "KANTE_COMPLETE";

/// How long a completer waits for the daemon.
const DEADLINE: Duration = Duration::from_secs(2);

/// Answers a completion request and exits when the shell's script called
/// (`KANTE_COMPLETE` set); otherwise returns and the command runs.
pub fn answer_if_asked() {
    CompleteEnv::with_factory(Cli::command).var(VAR).complete();
}

/// Prints the registration script of `shell` (bash, zsh, fish, elvish or
/// powershell) that calls `completer` back for candidates.
pub fn registration(shell: &str, completer: &str) -> anyhow::Result<()> {
    let known = ["bash", "zsh", "fish", "elvish", "powershell"];
    if !known.contains(&shell) {
        anyhow::bail!("Unknown shell {shell:?}: one of {}", known.join(", "));
    }
    // CompleteEnv reads the shell from its variable; with no words after
    // the binary it writes the registration script.
    // SAFETY: single-threaded here (before any runtime is built), and
    // nothing else reads the environment concurrently.
    unsafe { std::env::set_var(VAR, shell) };
    let done = CompleteEnv::with_factory(Cli::command)
        .var(VAR)
        .completer(completer)
        .try_complete(["kante"], None)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?;
    anyhow::ensure!(done, "no completion script was written");
    Ok(())
}

/// Instance names.
pub fn instances() -> ArgValueCompleter {
    ArgValueCompleter::new(|cur: &OsStr| from_daemon(cur, "/1.0/instances"))
}

/// Profile names.
pub fn profiles() -> ArgValueCompleter {
    ArgValueCompleter::new(|cur: &OsStr| from_daemon(cur, "/1.0/profiles"))
}

/// Network names.
pub fn networks() -> ArgValueCompleter {
    ArgValueCompleter::new(|cur: &OsStr| from_daemon(cur, "/1.0/networks"))
}

/// Storage pool names.
pub fn pools() -> ArgValueCompleter {
    ArgValueCompleter::new(|cur: &OsStr| from_daemon(cur, "/1.0/storage-pools"))
}

/// Image aliases.
pub fn images() -> ArgValueCompleter {
    ArgValueCompleter::new(|cur: &OsStr| from_daemon(cur, "/1.0/images/aliases"))
}

/// Remote names (from the client's configuration, `local` included).
pub fn remotes() -> ArgValueCompleter {
    ArgValueCompleter::new(|cur: &OsStr| {
        let cur = cur.to_string_lossy();
        let Ok(cfg) = Config::load() else {
            return Vec::new();
        };
        std::iter::once(remote::LOCAL.to_string())
            .chain(cfg.remotes.keys().cloned())
            .filter(|n| n.starts_with(cur.as_ref()))
            .map(CompletionCandidate::new)
            .collect()
    })
}

/// The names under `path` on the remote `current` names (or the default
/// one) that start with what is typed, each with the typed `REMOTE:`
/// prefix; plus the configured remotes as `REMOTE:` while no remote is
/// typed.
fn from_daemon(current: &OsStr, path: &str) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let Ok(cfg) = Config::load() else {
        return Vec::new();
    };
    let (remote, typed) = match current.split_once(':') {
        Some((r, rest)) if cfg.has(r) => (r.to_string(), rest.to_string()),
        Some(_) => return Vec::new(),
        None => (cfg.default_remote.clone(), current.to_string()),
    };
    let prefix = if current.contains(':') {
        format!("{remote}:")
    } else {
        String::new()
    };
    let mut out: Vec<CompletionCandidate> = names(&cfg, &remote, path)
        .into_iter()
        .filter(|n| n.starts_with(&typed))
        .map(|n| CompletionCandidate::new(format!("{prefix}{n}")))
        .collect();
    if prefix.is_empty() {
        out.extend(
            cfg.remotes
                .iter()
                .filter(|(name, r)| r.protocol != "simplestreams" && name.starts_with(&typed))
                .map(|(name, _)| CompletionCandidate::new(format!("{name}:"))),
        );
    }
    out
}

/// The last path segments of the URLs a listing answers (empty on any
/// failure or after the deadline).
fn names(cfg: &Config, remote_name: &str, path: &str) -> Vec<String> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    runtime.block_on(async {
        let Ok(client) = remote::connect::client(cfg, remote_name) else {
            return Vec::new();
        };
        let listing = tokio::time::timeout(DEADLINE, client.get_json::<Vec<String>>(path));
        match listing.await {
            Ok(Ok(urls)) => urls.iter().filter_map(|u| last_segment(u)).collect(),
            _ => Vec::new(),
        }
    })
}

/// `/1.0/instances/c%201?project=x` → `c 1`.
fn last_segment(url: &str) -> Option<String> {
    let path = url.split('?').next()?;
    let seg = path.rsplit('/').next().filter(|s| !s.is_empty())?;
    Some(percent_decode(seg))
}

/// Decodes `%XX` escapes (names in URLs are escaped by the server).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_url_lists() {
        assert_eq!(last_segment("/1.0/instances/c1").as_deref(), Some("c1"));
        assert_eq!(
            last_segment("/1.0/images/aliases/debian%2F12?project=default").as_deref(),
            Some("debian/12")
        );
        assert_eq!(last_segment("/1.0/instances/"), None);
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn unknown_shells_are_refused() {
        let e = registration("tcsh", "kante").unwrap_err().to_string();
        assert!(e.contains("Unknown shell \"tcsh\""), "{e}");
    }
}
