//! The guest API, `/dev/lxd/sock` (LXD's devlxd): each running instance
//! with `security.devlxd` (on unless set false) gets its own unix socket,
//! which the daemon binds on the host at `KANTE_DIR/devlxd/<name>/sock`
//! (in a directory closed to host users) and the start plan bind-mounts,
//! directory and all, read-only at `/dev/lxd` in the container.
//!
//! A socket serves one instance only: its answers are built from that
//! instance's config and devices (`api`, `view`; its changes as a
//! websocket at `/1.0/events`: `events`; the host's images with
//! `security.devlxd.images`: `export`), and a connection whose peer
//! process (`SO_PEERCRED`) is not one of the instance's gets 403 (`peer`).
//! The listener lives with the running instance (`Running::devlxd`) and is
//! closed, its socket file and directory removed, when the instance stops
//! (a daemon that shuts down closes it but leaves the directory).
//! Because the directory, not the file, is mounted, a restarted daemon
//! binds a fresh socket in it and the running guest sees it at once.

pub(crate) mod api;
pub(crate) mod events;
pub(crate) mod export;
mod peer;
mod serve;
mod view;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use kante_api::ConfigMap;
use kante_runtime::BindMount;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use crate::error::{EngineError, Result};
use crate::Engine;
pub(crate) use peer::Owner;

/// Where the socket appears in the guest: its directory.
pub const GUEST_DIR: &str = "/dev/lxd";

/// `security.devlxd`: true unless set to a false value (LXD's default).
pub(crate) fn enabled(econfig: &ConfigMap) -> bool {
    match econfig.get("security.devlxd").filter(|v| !v.is_empty()) {
        None => true,
        v => crate::util::is_true(v),
    }
}

/// Removes an instance's socket directory when dropped (a failed start, a
/// stop), unless handed on.
struct SocketDir(Option<PathBuf>);

impl Drop for SocketDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            remove_dir(&dir);
        }
    }
}

fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("sock"));
    if let Err(e) = std::fs::remove_dir(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("removing {}: {e}", dir.display());
        }
    }
}

/// A bound, not yet served, guest socket: what the start plan mounts.
pub(crate) struct Bound {
    listener: UnixListener,
    dir: SocketDir,
}

impl Bound {
    /// The mount that shows the socket's directory at `/dev/lxd`:
    /// read-only, and idmapped like the rootfs when the instance has an id
    /// map (`shifted`), so the monitor prepares it from the host side and
    /// the guest's root never looks up its host path (which may lie under
    /// a closed directory).
    pub(crate) fn mount(&self, shifted: bool) -> BindMount {
        BindMount {
            source: self.dir.0.clone().unwrap_or_default(),
            target: GUEST_DIR.into(),
            readonly: true,
            idmapped: shifted,
        }
    }

    /// Starts answering for instance `name`, whose processes `owner` tells.
    pub(crate) fn serve(mut self, engine: &Engine, name: &str, owner: Owner) -> DevlxdHandle {
        let target = serve::Target {
            engine: engine.me.clone(),
            name: name.to_string(),
            owner,
        };
        let task = tokio::spawn(serve::accept_loop(self.listener, target));
        // From now on the directory goes with the instance (`devlxd_clear`
        // at its exit), not with this value: a daemon that shuts down
        // leaves it to the running guest, for the next daemon to bind in.
        self.dir.0 = None;
        DevlxdHandle { task }
    }
}

/// A served guest socket; dropping it closes the listener and every
/// connection (the socket file stays until `devlxd_clear`).
pub struct DevlxdHandle {
    task: JoinHandle<()>,
}

impl Drop for DevlxdHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Engine {
    /// The host directory holding instance `name`'s guest socket.
    pub(crate) fn devlxd_dir(&self, name: &str) -> PathBuf {
        self.paths.root.join("devlxd").join(name)
    }

    /// Binds instance `name`'s guest socket (replacing a stale one a
    /// daemon that went away left).
    pub(crate) fn devlxd_bind(&self, name: &str) -> Result<Bound> {
        let top = self.paths.root.join("devlxd");
        let dir = self.devlxd_dir(name);
        let io = |what: &'static str| EngineError::io_ctx(what);
        // Closed to host users, as `containers/`: through an idmapped
        // mount, what a guest could write there would be on-disk root's.
        crate::util::ensure_dir_mode(&top, 0o700)
            .map_err(io("guest API: creating its directory"))?;
        crate::util::ensure_dir_mode(&dir, 0o755)
            .map_err(io("guest API: creating its directory"))?;
        let guard = SocketDir(Some(dir.clone()));
        let _ = std::fs::remove_file(dir.join("sock"));
        // Bound through the directory's descriptor: the path stays short
        // whatever KANTE_DIR is (a socket path has at most 107 bytes).
        let handle = std::fs::File::open(&dir).map_err(io("guest API: opening its directory"))?;
        let short = format!("/proc/self/fd/{}/sock", handle.as_raw_fd());
        let listener = UnixListener::bind(&short).map_err(io("guest API: binding its socket"))?;
        drop(handle);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("sock"), std::fs::Permissions::from_mode(0o666))
            .map_err(io("guest API: opening its socket to the guest"))?;
        Ok(Bound {
            listener,
            dir: guard,
        })
    }

    /// Removes what a guest socket of `name` left (an instance that died
    /// while the daemon was away, a deleted one).
    pub(crate) fn devlxd_clear(&self, name: &str) {
        let dir = self.devlxd_dir(name);
        if dir.exists() {
            remove_dir(&dir);
        }
    }
}
