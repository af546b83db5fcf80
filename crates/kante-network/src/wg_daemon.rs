//! The `wireguard-go` daemons of encrypted overlays (one per overlay and
//! member, see [`crate::overlay_wg`]), supervised as dnsmasq is: started
//! in the foreground as kanted's child, its pid in the network's state
//! dir (`wireguard-go.pid`, its stderr in `wireguard-go.log`), adopted by
//! a restarted kanted (the encrypted data path lives through a daemon
//! restart), restarted by the overlay keeper when it died, stopped and
//! reaped at delete.
//!
//! `wireguard-go` and `wg` meet at `/run/wireguard/<ifname>.sock`, a fixed
//! path: two members on one host (a lab) would share it for the same
//! interface name. So each daemon runs in a mount namespace of its own
//! with a private tmpfs on `/run/wireguard`, and `wg` is run in that
//! namespace (`nsenter --mount`); nothing is left on the host's `/run`
//! but the empty mount point.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::ovs::{find_program, run, stop_child};
use crate::{NetContext, NetworkError, Result};

/// The private key's file in the network's state dir (0600).
pub const KEY_FILE: &str = "wg.key";
const PUB_FILE: &str = "wg.pub";
const PID_FILE: &str = "wireguard-go.pid";
const LOG_FILE: &str = "wireguard-go.log";
const SOCKET_DIR: &str = "/run/wireguard";
/// How long a started daemon may take to open its interface and socket.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// The children this process started, by state dir (reaped at stop).
static CHILDREN: Mutex<BTreeMap<PathBuf, Child>> = Mutex::new(BTreeMap::new());

fn children() -> std::sync::MutexGuard<'static, BTreeMap<PathBuf, Child>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

fn wg_program() -> Result<PathBuf> {
    find_program("wg").ok_or(NetworkError::MissingTool("wg", "wireguard-tools"))
}

/// The private key's path, made now (`wg genkey`, 0600) if missing.
pub async fn ensure_key(state_dir: &Path) -> Result<PathBuf> {
    let path = state_dir.join(KEY_FILE);
    if path.exists() {
        return Ok(path);
    }
    let key = run(&wg_program()?, &["genkey".to_string()]).await?;
    std::fs::create_dir_all(state_dir).map_err(NetworkError::io("making the state dir"))?;
    let tmp = state_dir.join(format!("{KEY_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(NetworkError::io("creating the WireGuard key file"))?;
    std::io::Write::write_all(&mut f, key.trim().as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(NetworkError::io("writing the WireGuard key file"))?;
    std::fs::rename(&tmp, &path).map_err(NetworkError::io("writing the WireGuard key file"))?;
    Ok(path)
}

/// The public key of the private key in `state_dir` (`wg pubkey`, kept
/// in `wg.pub` beside it).
pub async fn public_key(state_dir: &Path) -> Result<String> {
    let key = std::fs::read(state_dir.join(KEY_FILE))
        .map_err(NetworkError::io("reading the WireGuard key file"))?;
    if let Ok(p) = std::fs::read_to_string(state_dir.join(PUB_FILE)) {
        return Ok(p.trim().to_string());
    }
    let mut child = tokio::process::Command::new(wg_program()?)
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NetworkError::io("running wg pubkey"))?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(&key)
            .await
            .map_err(NetworkError::io("running wg pubkey"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(NetworkError::io("running wg pubkey"))?;
    if !out.status.success() {
        return Err(NetworkError::Command {
            program: "wg pubkey".into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let _ = std::fs::write(state_dir.join(PUB_FILE), format!("{public}\n"));
    Ok(public)
}

/// Removes the private key (and the public one).
pub fn remove_key(state_dir: &Path) -> Result<()> {
    let _ = std::fs::remove_file(state_dir.join(PUB_FILE));
    match std::fs::remove_file(state_dir.join(KEY_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(NetworkError::io("removing the WireGuard key file")(e))
        }
        _ => Ok(()),
    }
}

/// The pid in `state_dir`'s pid file if it is a live `wireguard-go` of
/// `dev` (a recycled pid is not ours).
pub fn running_pid(state_dir: &Path, dev: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(state_dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ours = args.first().is_some_and(|a| a.ends_with(b"wireguard-go"))
        && args.contains(&dev.as_bytes());
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let zombie = stat
        .rsplit_once(')')
        .is_none_or(|(_, r)| r.trim_start().starts_with('Z'));
    (ours && !zombie).then_some(pid)
}

fn socket_of(pid: u32, dev: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{SOCKET_DIR}/{dev}.sock"))
}

/// The pid of `dev`'s running daemon, started now if there is none (a
/// link of that name left by a dead one is removed first).
pub async fn ensure_running(ctx: &NetContext, dev: &str, state_dir: &Path) -> Result<u32> {
    if let Some(pid) = running_pid(state_dir, dev) {
        if ctx.ops.link(dev).await?.is_some() {
            return Ok(pid);
        }
        stop(state_dir, dev)?;
    }
    if let Some(mut c) = children().remove(state_dir) {
        let _ = c.kill();
        let _ = c.wait();
    }
    let prog = find_program("wireguard-go")
        .ok_or(NetworkError::MissingTool("wireguard-go", "wireguard-go"))?;
    wg_program()?;
    if ctx.ops.link(dev).await?.is_some() {
        ctx.ops.delete_link(dev).await?;
    }
    std::fs::create_dir_all(SOCKET_DIR).map_err(NetworkError::io("making /run/wireguard"))?;
    std::fs::create_dir_all(state_dir).map_err(NetworkError::io("making the state dir"))?;
    let log = std::fs::File::create(state_dir.join(LOG_FILE))
        .map_err(NetworkError::io("creating wireguard-go's log"))?;
    let child = spawn(&prog, dev, log)?;
    let pid = child.id();
    let pidfile = state_dir.join(PID_FILE);
    std::fs::write(&pidfile, format!("{pid}\n"))
        .and_then(|_| std::fs::set_permissions(&pidfile, std::fs::Permissions::from_mode(0o644)))
        .map_err(NetworkError::io("writing wireguard-go's pid file"))?;
    children().insert(state_dir.to_path_buf(), child);
    let start = Instant::now();
    loop {
        let exited = children()
            .get_mut(state_dir)
            .map(|c| matches!(c.try_wait(), Ok(Some(_))))
            .unwrap_or(true);
        if exited {
            let log = std::fs::read_to_string(state_dir.join(LOG_FILE)).unwrap_or_default();
            stop(state_dir, dev)?;
            return Err(NetworkError::Command {
                program: "wireguard-go".into(),
                message: format!("exited at start: {}", log.trim()),
            });
        }
        if socket_of(pid, dev).exists() && ctx.ops.link(dev).await?.is_some() {
            return Ok(pid);
        }
        if start.elapsed() > READY_WITHIN {
            stop(state_dir, dev)?;
            return Err(NetworkError::Command {
                program: "wireguard-go".into(),
                message: format!("{dev} not ready within {READY_WITHIN:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `wireguard-go -f dev` in a mount namespace of its own with a
/// private tmpfs on `/run/wireguard` (see the module's doc).
fn spawn(prog: &Path, dev: &str, log: std::fs::File) -> Result<Child> {
    let root = CString::new("/").expect("no NUL");
    let target = CString::new(SOCKET_DIR).expect("no NUL");
    let tmpfs = CString::new("tmpfs").expect("no NUL");
    let opts = CString::new("mode=0700").expect("no NUL");
    let mut cmd = Command::new(prog);
    cmd.arg("-f")
        .arg(dev)
        .env("LOG_LEVEL", "error")
        .env("WG_PROCESS_FOREGROUND", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: between fork and exec only async-signal-safe calls (unshare,
    // mount) on CStrings made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::mount(
                tmpfs.as_ptr(),
                target.as_ptr(),
                tmpfs.as_ptr(),
                0,
                opts.as_ptr().cast(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(NetworkError::io("starting wireguard-go"))
}

/// Stops `dev`'s daemon of `state_dir` (our child or one adopted from an
/// earlier kanted) and removes its pid file; its tun link goes with it.
pub fn stop(state_dir: &Path, dev: &str) -> Result<()> {
    if let Some(c) = children().remove(state_dir) {
        stop_child(c);
    }
    if let Some(pid) = running_pid(state_dir, dev) {
        let p = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while running_pid(state_dir, dev).is_some() {
            if start.elapsed() > Duration::from_secs(5) {
                let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(NetworkError::Command {
                    program: "wireguard-go".into(),
                    message: format!("pid {pid} does not exit"),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = std::fs::remove_file(state_dir.join(PID_FILE));
    Ok(())
}

/// Runs `wg args…` in the mount namespace of daemon `pid`.
pub async fn wg(pid: u32, args: &[&str]) -> Result<String> {
    let nsenter =
        find_program("nsenter").ok_or(NetworkError::MissingTool("nsenter", "util-linux"))?;
    let mut all = vec![
        format!("--target={pid}"),
        "--mount".to_string(),
        "--".to_string(),
        wg_program()?.display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    run(&nsenter, &all).await
}

/// A WireGuard interface's state (`wg show DEV dump`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgDump {
    pub public_key: String,
    pub listen_port: u16,
    pub peers: Vec<WgPeerState>,
}

/// One peer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeerState {
    pub public_key: String,
    pub endpoint: Option<SocketAddr>,
    /// As `wg` prints them (`100.80.0.2/32`, comma-separated).
    pub allowed_ips: String,
    /// Seconds since the last handshake; `None` if there was none.
    pub handshake_age: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// `dev`'s state from the daemon `pid`.
pub async fn dump(pid: u32, dev: &str) -> Result<WgDump> {
    let out = wg(pid, &["show", dev, "dump"]).await?;
    parse_dump(&out, now()).ok_or_else(|| NetworkError::Command {
        program: "wg show dump".into(),
        message: format!("unexpected output {out:?}"),
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses `wg show DEV dump` (tab-separated: the interface's line, then
/// one per peer), handshake ages counted to `now`.
pub fn parse_dump(text: &str, now: u64) -> Option<WgDump> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head: Vec<&str> = lines.next()?.split('\t').collect();
    let mut d = WgDump {
        public_key: head.get(1)?.to_string(),
        listen_port: head.get(2)?.parse().ok()?,
        peers: Vec::new(),
    };
    for l in lines {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() < 7 {
            return None;
        }
        let hs: u64 = f[4].parse().ok()?;
        d.peers.push(WgPeerState {
            public_key: f[0].to_string(),
            endpoint: f[2].parse().ok(),
            allowed_ips: f[3].to_string(),
            handshake_age: (hs != 0).then(|| now.saturating_sub(hs)),
            rx_bytes: f[5].parse().ok()?,
            tx_bytes: f[6].parse().ok()?,
        });
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_is_parsed() {
        let text = "cHJpdg==\tUFVC=\t44096\toff\n\
                    QUFB=\t(none)\t192.0.2.2:44096\t100.80.0.2/32\t1000\t10\t20\t25\n\
                    QkJC=\t(none)\t(none)\t100.80.0.3/32\t0\t0\t0\t25\n";
        let d = parse_dump(text, 1010).unwrap();
        assert_eq!(d.public_key, "UFVC=");
        assert_eq!(d.listen_port, 44096);
        assert_eq!(d.peers.len(), 2);
        assert_eq!(d.peers[0].handshake_age, Some(10));
        assert_eq!(
            d.peers[0].endpoint,
            Some("192.0.2.2:44096".parse().unwrap())
        );
        assert_eq!((d.peers[0].rx_bytes, d.peers[0].tx_bytes), (10, 20));
        assert_eq!(d.peers[1].handshake_age, None);
        assert_eq!(d.peers[1].endpoint, None);
        assert!(parse_dump("", 0).is_none());
    }
}
