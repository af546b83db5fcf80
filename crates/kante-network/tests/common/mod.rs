//! Shared pieces of the root tests: serialisation, unique names, guards that
//! clean up even when a test fails, a DHCP client, TCP in a namespace, and
//! the final leak check.
//!
//! Network rule: these tests only talk to addresses inside namespaces they
//! made (and to the host ends of their own veths/bridges).

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use kante_network::NetnsRef;

static LOCK: Mutex<()> = Mutex::new(());

/// Holds the in-process mutex and a host-wide file lock, so tests never run
/// concurrently, nor beside another root test run of the project (the
/// integration suite takes the same `/run/kante-tests.lock`).
pub struct Serial {
    _g: MutexGuard<'static, ()>,
    _f: nix::fcntl::Flock<fs::File>,
}

/// `None` (and a message) when not root: these tests need the kernel.
pub fn setup() -> Option<Serial> {
    if !prerequisite(
        nix::unistd::Uid::effective().is_root(),
        "root (real bridges, netns, dnsmasq, nft)",
    ) {
        return None;
    }
    let g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/kante-tests.lock")
        .expect("lock file");
    let f = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");
    Some(Serial { _g: g, _f: f })
}

/// A short unique tag (`kt` + 4 hex) that every name a test makes contains.
pub fn tag() -> String {
    let n: u16 = rand::random();
    format!("kt{n:04x}")
}

pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn")
}

/// Runs a command and panics with its stderr if it fails.
pub fn must(args: &[&str]) -> String {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        assert!(name.contains("kt"));
        must(&["ip", "netns", "add", name]);
        must(&["ip", "-n", name, "link", "set", "lo", "up"]);
        Netns { name: name.into() }
    }

    pub fn nsref(&self) -> NetnsRef {
        NetnsRef::Path(PathBuf::from(format!("/run/netns/{}", self.name)))
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        let mut a = vec!["ip", "netns", "exec", &self.name];
        a.extend_from_slice(args);
        sh(&a)
    }

    pub fn must(&self, args: &[&str]) -> String {
        let mut a = vec!["ip", "netns", "exec", &self.name];
        a.extend_from_slice(args);
        must(&a)
    }

    /// Interface names (without `@peer`), sorted.
    pub fn links(&self) -> Vec<String> {
        let out = must(&["ip", "-n", &self.name, "-br", "link"]);
        let mut v: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|n| n.split('@').next().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    pub fn ping(&self, addr: &str) -> bool {
        self.exec(&["ping", "-c", "1", "-W", "2", addr])
            .status
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.name]);
    }
}

/// Deletes a host link on drop (if it is still there).
pub struct LinkGuard(pub String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        if sh(&["ip", "link", "show", &self.0]).status.success() {
            let _ = sh(&["ip", "link", "del", &self.0]);
        }
    }
}

/// Host ends of NICs a test made, deleted on drop if a failure left them.
#[derive(Default)]
pub struct HostEnds(Vec<String>);

impl HostEnds {
    pub fn track(&mut self, names: &[String]) {
        self.0 = names.to_vec();
    }
}

impl Drop for HostEnds {
    fn drop(&mut self) {
        for n in &self.0 {
            if sh(&["ip", "link", "show", n]).status.success() {
                let _ = sh(&["ip", "link", "del", n]);
            }
        }
    }
}

/// Puts a sysctl back as it was.
pub struct SysctlGuard {
    path: &'static str,
    old: String,
}

impl SysctlGuard {
    pub fn new(path: &'static str) -> SysctlGuard {
        SysctlGuard {
            path,
            old: fs::read_to_string(path).unwrap(),
        }
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        let _ = fs::write(self.path, self.old.trim());
    }
}

/// Everything a managed network may leave, removed by synchronous means on
/// drop: dnsmasq (by pid file), the nft table, the bridge (Linux or OVS),
/// the state directory.
/// Deletes an nftables table (`inet`) when dropped.
pub struct TableGuard(pub String);

impl Drop for TableGuard {
    fn drop(&mut self) {
        let _ = sh(&["nft", "delete", "table", "inet", &self.0]);
    }
}

pub struct NetworkGuard {
    pub name: String,
    pub state_dir: PathBuf,
    pub table: String,
    pub ovs_db: Option<PathBuf>,
}

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = kante_network::dnsmasq::stop_stale(&self.state_dir);
        let _ = sh(&["nft", "delete", "table", "inet", &self.table]);
        if let Some(db) = &self.ovs_db {
            let db = format!("--db=unix:{}", db.display());
            let _ = sh(&[
                "ovs-vsctl",
                "--timeout=5",
                &db,
                "--if-exists",
                "del-br",
                &self.name,
            ]);
        }
        if sh(&["ip", "link", "show", &self.name]).status.success() {
            let _ = sh(&["ip", "link", "del", &self.name]);
        }
        let _ = fs::remove_dir_all(&self.state_dir);
    }
}

/// A temp dir that others can traverse (so dnsmasq, once it has dropped to
/// its own user, can re-read the hosts file).
pub fn open_tempdir(tag: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("kante-net-{tag}-"))
        .tempdir()
        .unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# busybox udhcpc hook: only addresses, no routes (tests add their own).
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    echo "$ip" > "$KT_LEASE_OUT"
    ;;
esac
exit 0
"#;

/// Asks for a lease on `ifname` inside `ns` with busybox udhcpc; returns the
/// address it got and configured.
pub fn dhcp(ns: &Netns, ifname: &str, work: &Path) -> Ipv4Addr {
    let script = work.join("udhcpc.sh");
    fs::write(&script, UDHCPC_SCRIPT).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let out_file = work.join(format!("lease-{}-{ifname}", ns.name));
    let _ = fs::remove_file(&out_file);
    let o = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "busybox", "udhcpc", "-i", ifname, "-f", "-q", "-n",
        ])
        .args(["-t", "10", "-T", "1", "-s"])
        .arg(&script)
        .env("KT_LEASE_OUT", &out_file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "udhcpc in {} failed: {}{}",
        ns.name,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if std::env::var_os("KT_DEBUG_DHCP").is_some() {
        eprintln!("udhcpc: {}", String::from_utf8_lossy(&o.stderr));
    }
    fs::read_to_string(&out_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A TCP server inside `ns`: accepts one connection, echoes everything,
/// and reports the peer's address. Returns once it listens.
pub fn tcp_echo_server(
    ns: &NetnsRef,
    addr: SocketAddr,
) -> std::sync::mpsc::Receiver<std::io::Result<SocketAddr>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (tx, rx) = std::sync::mpsc::channel();
    let f = ns.open().unwrap();
    std::thread::spawn(move || {
        use std::os::fd::AsFd;
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        // Bounded wait: a test that fails before connecting must not leave a
        // thread holding the namespace alive.
        l.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let r = (|| {
            let (mut s, peer) = loop {
                match l.accept() {
                    Ok(x) => break x,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if std::time::Instant::now() > deadline {
                            return Err(e);
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(e),
                }
            };
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut buf = vec![0u8; 65536];
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n])?;
            }
            Ok(peer)
        })();
        let _ = tx.send(r);
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server listening");
    rx
}

/// Sends `len` bytes to an echo server and reads them back (from `ns`, or
/// from the host when `None`); returns the seconds it took.
pub fn tcp_roundtrip(ns: Option<&NetnsRef>, to: SocketAddr, len: usize) -> f64 {
    let work = move || -> std::io::Result<f64> {
        let start = std::time::Instant::now();
        let s = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut w = s.try_clone()?;
        let writer = std::thread::spawn(move || -> std::io::Result<()> {
            let chunk = vec![0x5au8; 65536];
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len());
                w.write_all(&chunk[..n])?;
                left -= n;
            }
            w.shutdown(std::net::Shutdown::Write)
        });
        let mut got = 0usize;
        let mut buf = vec![0u8; 65536];
        let mut r = &s;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|b| *b == 0x5a));
            got += n;
        }
        writer.join().unwrap()?;
        assert_eq!(got, len, "echoed bytes");
        Ok(start.elapsed().as_secs_f64())
    };
    match ns {
        Some(ns) => {
            let f = ns.open().unwrap();
            std::thread::spawn(move || {
                use std::os::fd::AsFd;
                nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                work()
            })
            .join()
            .unwrap()
            .expect("tcp roundtrip")
        }
        None => work().expect("tcp roundtrip"),
    }
}

/// Fails if anything carrying `tag` (or one of `names`) is left: links,
/// namespaces, nft tables, processes.
pub fn assert_no_leaks(tag: &str, names: &[String]) {
    let links = must(&["ip", "-br", "link"]);
    for l in links.lines() {
        let n = l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .split('@')
            .next()
            .unwrap();
        assert!(
            !n.contains(tag) && !names.iter().any(|x| x == n),
            "leaked link {n}"
        );
    }
    let netns = must(&["ip", "netns", "list"]);
    assert!(!netns.contains(tag), "leaked netns: {netns}");
    let tables = must(&["nft", "list", "tables"]);
    assert!(!tables.contains(tag), "leaked nft table: {tables}");
    for p in fs::read_dir("/proc").unwrap().flatten() {
        let name = p.file_name().to_string_lossy().to_string();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cmd = fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(
            !cmd.contains(&format!("kante-net-{tag}")),
            "leaked process {name}: {cmd}"
        );
    }
}

/// Whether a test's prerequisite is there. A missing one is a skip, said on
/// stderr, except under `KANTE_REQUIRE_ALL=1` (set by `scripts/test.sh`,
/// which installs everything the tests need): there it fails the test, so a
/// missing tool or module can never pass for a green test.
pub fn prerequisite(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("KANTE_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("missing prerequisite: {what} (KANTE_REQUIRE_ALL=1)");
    }
    eprintln!("SKIPPED: {what}");
    false
}
