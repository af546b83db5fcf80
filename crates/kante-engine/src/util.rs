//! Small helpers without a better home.

use kante_api::Timestamp;
use rand::RngCore;

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A random MAC in LXD's 00:16:3e range.
pub fn random_hwaddr() -> String {
    let mut b = [0u8; 3];
    rand::rng().fill_bytes(&mut b);
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// Parses `true`/`false` config values the way LXD does.
pub fn is_true(v: Option<&String>) -> bool {
    matches!(
        v.map(|s| s.to_ascii_lowercase()).as_deref(),
        Some("true" | "1" | "yes" | "on")
    )
}

/// A positive number of seconds from the environment variable `name`, else `default`.
pub fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(default)
}

/// Registers an fd we own with the tokio reactor.
pub fn async_fd(
    fd: std::os::fd::OwnedFd,
) -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    register_fd(fd)
}

/// Types that own their fd, so it stays open and the same for as long as
/// they live (what [`register_fd`] relies on).
pub(crate) trait OwnsFd: std::os::fd::AsRawFd {}

impl OwnsFd for std::os::fd::OwnedFd {}
impl OwnsFd for kante_runtime::pty::PtyMaster {}
/// Each clone keeps the pidfd open: it lives at least as long as this one.
impl OwnsFd for std::sync::Arc<kante_runtime::process::ChildProcess> {}

/// Registers an owner of an fd with the tokio reactor.
pub(crate) fn register_fd<T: OwnsFd>(owner: T) -> std::io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: `T: OwnsFd` owns its fd, which the AsyncFd holds from here on:
    // it stays open and names the same file until the AsyncFd drops it.
    unsafe { tokio::io::unix::AsyncFd::register(owner) }.map_err(|e| e.into_parts().1)
}

/// Resolves once a watch flag is true (the guard never outlives this call).
pub async fn wait_true(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Creates `dir` (and its parents) if needed and sets its mode, also on a
/// directory an older daemon made more open.
pub fn ensure_dir_mode(dir: &std::path::Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// An RFC 3339 time as the state stores it; the zero time if unreadable.
pub(crate) fn parse_time(s: &str) -> Timestamp {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| kante_api::zero_time())
}

/// A time as the state stores it (RFC 3339, nanoseconds, `Z`).
pub(crate) fn fmt_time(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Removes a file (a missing one is no error).
pub fn remove_file_if_present(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `s` percent-encoded as a path segment or query value.
pub(crate) fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    /// Helpers die with the thread that forked them (PR_SET_PDEATHSIG), and
    /// the engine runs them on tokio's blocking pool, whose idle threads
    /// exit. The thread running a helper waits for it, so it is never idle
    /// while the helper lives: other pool threads coming and going (here
    /// after 1 ms idle) do not kill it.
    #[test]
    fn helpers_on_the_blocking_pool_run_to_their_end() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_keep_alive(Duration::from_millis(1))
            .enable_time()
            .build()
            .unwrap();
        let out = rt.block_on(async {
            let long = tokio::task::spawn_blocking(|| {
                kante_storage::dies_with_daemon(
                    Command::new("sh").args(["-c", "sleep 0.5; echo done"]),
                )
                .output()
            });
            for _ in 0..20 {
                tokio::task::spawn_blocking(|| ()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            long.await.unwrap().unwrap()
        });
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "done");
    }
}
