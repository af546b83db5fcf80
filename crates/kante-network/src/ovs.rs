//! Open vSwitch through `ovs-vsctl`, the ethtool ioctl that makes its
//! userspace datapath usable with veths, and a private OVS for tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::NetnsRef;
use crate::{NetworkError, Result};

const VSCTL: &str = "ovs-vsctl";
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// An OVS datapath type. Without the openvswitch kernel module only
/// `Netdev` (the userspace datapath) works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datapath {
    Netdev,
    System,
}

impl Datapath {
    pub fn as_str(&self) -> &'static str {
        match self {
            Datapath::Netdev => "netdev",
            Datapath::System => "system",
        }
    }
}

/// Where `ovs-vsctl` finds its database: the system's (`db: None`) or a
/// private one (`unix:<db>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ovs {
    pub db: Option<PathBuf>,
}

/// Looks a program up in PATH and the sbin directories (daemons run with
/// minimal PATHs).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// Runs a program to completion; a non-zero exit becomes `Command` with its
/// stderr.
pub(crate) async fn run(program: &Path, args: &[String]) -> Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(NetworkError::io(format!("running {}", program.display())))?;
    if !out.status.success() {
        return Err(NetworkError::Command {
            program: format!("{} {}", program.display(), args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Ovs {
    pub fn system() -> Ovs {
        Ovs { db: None }
    }

    pub fn with_db(socket: impl Into<PathBuf>) -> Ovs {
        Ovs {
            db: Some(socket.into()),
        }
    }

    /// True when `ovs-vsctl` is installed.
    pub fn installed(&self) -> bool {
        find_program(VSCTL).is_some()
    }

    async fn vsctl(&self, args: &[&str]) -> Result<String> {
        let prog = find_program(VSCTL)
            .ok_or(NetworkError::MissingTool("ovs-vsctl", "openvswitch-switch"))?;
        let mut a = vec!["--timeout=10".to_string()];
        if let Some(db) = &self.db {
            a.push(format!("--db=unix:{}", db.display()));
        }
        a.extend(args.iter().map(|s| s.to_string()));
        run(&prog, &a).await
    }

    /// True only if ovs-vsctl exists, its database answers and `name` is a
    /// bridge there. Never an error: "no OVS" means "not an OVS bridge".
    pub async fn is_ovs_bridge(&self, name: &str) -> bool {
        if !self.installed() {
            return false;
        }
        // br-exists exits 2 for "no such bridge", other codes for trouble:
        // either way the answer is no.
        self.vsctl(&["br-exists", name]).await.is_ok()
    }

    /// Creates the bridge (no-op if it exists) with the given datapath.
    pub async fn add_bridge(&self, name: &str, datapath: Datapath) -> Result<()> {
        let dp = format!("datapath_type={}", datapath.as_str());
        self.vsctl(&[
            "--may-exist",
            "add-br",
            name,
            "--",
            "set",
            "bridge",
            name,
            &dp,
        ])
        .await?;
        Ok(())
    }

    pub async fn del_bridge(&self, name: &str) -> Result<()> {
        self.vsctl(&["--if-exists", "del-br", name]).await?;
        Ok(())
    }

    /// Adds `port` to `bridge` (no-op if it is there), tagged with `vlan`,
    /// with `external_ids` set on its Interface row.
    pub async fn add_port(
        &self,
        bridge: &str,
        port: &str,
        external_ids: &[(&str, &str)],
        vlan: Option<u16>,
    ) -> Result<()> {
        let tag = vlan.map(|v| format!("tag={v}"));
        let ids: Vec<String> = external_ids
            .iter()
            .map(|(k, v)| format!("external_ids:{k}={v}"))
            .collect();
        let mut args = vec!["--may-exist", "add-port", bridge, port];
        if let Some(t) = &tag {
            args.push(t);
        }
        if !ids.is_empty() {
            args.extend(["--", "set", "interface", port]);
            args.extend(ids.iter().map(String::as_str));
        }
        self.vsctl(&args).await?;
        Ok(())
    }

    pub async fn del_port(&self, port: &str) -> Result<()> {
        self.vsctl(&["--if-exists", "del-port", port]).await?;
        Ok(())
    }

    pub async fn list_ports(&self, bridge: &str) -> Result<Vec<String>> {
        let out = self.vsctl(&["list-ports", bridge]).await?;
        Ok(out
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// The bridge's datapath type (an empty value means `system`).
    pub async fn datapath_type(&self, bridge: &str) -> Result<Datapath> {
        let out = self
            .vsctl(&["get", "bridge", bridge, "datapath_type"])
            .await?;
        Ok(match out.trim().trim_matches('"') {
            "netdev" => Datapath::Netdev,
            _ => Datapath::System,
        })
    }

    /// Asks OVS for an MTU on one of its interfaces (the bridge's own port).
    pub async fn set_mtu(&self, iface: &str, mtu: u32) -> Result<()> {
        let m = format!("mtu_request={mtu}");
        self.vsctl(&["set", "interface", iface, &m]).await?;
        Ok(())
    }
}

const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

// struct ifreq with the ifr_data member of its union, padded to 40 bytes.
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool_value(ifname: &str, cmd: u32, data: u32) -> Result<u32> {
    use std::os::fd::AsRawFd;
    let name = crate::ifreq::ifr_name(ifname)?;
    let sock = crate::ifreq::ioctl_socket("ethtool")?;
    let mut val = EthtoolValue { cmd, data };
    let mut req = IfreqData {
        name,
        data: &mut val as *mut EthtoolValue as *mut libc::c_void,
        _pad: [0; 16],
    };
    // SAFETY: req and val outlive the call; SIOCETHTOOL reads/writes `val`.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if r < 0 {
        return Err(NetworkError::io(format!("ethtool ioctl on {ifname}"))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(val.data)
}

/// Turns TX checksum offload off on `ifname` inside `netns` (`ethtool -K
/// <if> tx off`). With OVS's userspace datapath, packets a veth hands over
/// with a partial checksum leave with a bad one, and TCP stalls.
pub fn disable_tx_offload_in_netns(netns: &NetnsRef, ifname: &str) -> Result<()> {
    let name = ifname.to_string();
    netns.run(move || ethtool_value(&name, ETHTOOL_STXCSUM, 0).map(|_| ()))
}

/// Whether TX checksum offload is on for `ifname` inside `netns`.
pub fn tx_offload_in_netns(netns: &NetnsRef, ifname: &str) -> Result<bool> {
    let name = ifname.to_string();
    netns.run(move || ethtool_value(&name, ETHTOOL_GTXCSUM, 0).map(|v| v != 0))
}

/// Same as [`disable_tx_offload_in_netns`] for an interface of our own
/// namespace.
pub fn disable_tx_offload(ifname: &str) -> Result<()> {
    ethtool_value(ifname, ETHTOOL_STXCSUM, 0).map(|_| ())
}

/// A private Open vSwitch (ovsdb-server + ovs-vswitchd with the userspace
/// datapath only) whose database, sockets, pid and log files all live in
/// one directory. For tests; stopped on drop.
pub struct PrivateOvs {
    dir: PathBuf,
    db_server: Option<Child>,
    vswitchd: Option<Child>,
}

impl PrivateOvs {
    /// Starts both daemons in `dir` (created if missing).
    pub fn start(dir: &Path) -> Result<PrivateOvs> {
        let tool = |n: &'static str| {
            find_program(n).ok_or(NetworkError::MissingTool(n, "openvswitch-switch"))
        };
        let (dbtool, dbserver, vswitchd, vsctl) = (
            tool("ovsdb-tool")?,
            tool("ovsdb-server")?,
            tool("ovs-vswitchd")?,
            tool("ovs-vsctl")?,
        );
        fs::create_dir_all(dir).map_err(NetworkError::io(format!("creating {}", dir.display())))?;
        let mut ovs = PrivateOvs {
            dir: dir.to_path_buf(),
            db_server: None,
            vswitchd: None,
        };
        let p = |n: &str| dir.join(n).display().to_string();
        let cmd = |prog: &Path| {
            let mut c = Command::new(prog);
            c.env("OVS_RUNDIR", dir)
                .env("OVS_DBDIR", dir)
                .env("OVS_LOGDIR", dir)
                .env("OVS_PKGDATADIR", "/usr/share/openvswitch")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c
        };
        let status = cmd(&dbtool)
            .args(["create", &p("conf.db"), SCHEMA])
            .status()
            .map_err(NetworkError::io("running ovsdb-tool"))?;
        if !status.success() {
            return Err(NetworkError::Command {
                program: "ovsdb-tool create".into(),
                message: format!("{status}"),
            });
        }
        ovs.db_server = Some(
            cmd(&dbserver)
                .arg(p("conf.db"))
                .arg(format!("--remote=punix:{}", p("db.sock")))
                .arg(format!("--pidfile={}", p("ovsdb-server.pid")))
                .arg(format!("--unixctl={}", p("ovsdb-server.ctl")))
                .arg(format!("--log-file={}", p("ovsdb-server.log")))
                .spawn()
                .map_err(NetworkError::io("starting ovsdb-server"))?,
        );
        wait_for(&dir.join("db.sock"), "ovsdb-server's socket")?;
        let status = cmd(&vsctl)
            .args([
                format!("--db=unix:{}", p("db.sock")),
                "--no-wait".into(),
                "init".into(),
            ])
            .status()
            .map_err(NetworkError::io("running ovs-vsctl init"))?;
        if !status.success() {
            return Err(NetworkError::Command {
                program: "ovs-vsctl init".into(),
                message: format!("{status}"),
            });
        }
        ovs.vswitchd = Some(
            cmd(&vswitchd)
                .arg(format!("unix:{}", p("db.sock")))
                .arg("--disable-system")
                .arg("--disable-system-route")
                .arg(format!("--pidfile={}", p("ovs-vswitchd.pid")))
                .arg(format!("--unixctl={}", p("ovs-vswitchd.ctl")))
                .arg(format!("--log-file={}", p("ovs-vswitchd.log")))
                .spawn()
                .map_err(NetworkError::io("starting ovs-vswitchd"))?,
        );
        wait_for(
            &dir.join("ovs-vswitchd.ctl"),
            "ovs-vswitchd's control socket",
        )?;
        Ok(ovs)
    }

    /// The [`Ovs`] handle that talks to this instance.
    pub fn ovs(&self) -> Ovs {
        Ovs::with_db(self.dir.join("db.sock"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemons' pids (for leak checks).
    pub fn pids(&self) -> Vec<u32> {
        [&self.vswitchd, &self.db_server]
            .into_iter()
            .flatten()
            .map(|c| c.id())
            .collect()
    }

    /// Deletes every bridge (ovs-vswitchd leaves the tap devices of
    /// userspace bridges behind when it is merely killed), then stops
    /// ovs-vswitchd and ovsdb-server.
    pub fn stop(&mut self) {
        if self.vswitchd.is_some() {
            if let Some(vsctl) = find_program("ovs-vsctl") {
                let db = format!("--db=unix:{}", self.dir.join("db.sock").display());
                let run = |args: &[&str]| {
                    Command::new(&vsctl)
                        .args(["--timeout=5", &db])
                        .args(args)
                        .stdin(Stdio::null())
                        .stderr(Stdio::null())
                        .output()
                        .ok()
                };
                if let Some(out) = run(&["list-br"]) {
                    for br in String::from_utf8_lossy(&out.stdout).lines() {
                        run(&["--if-exists", "del-br", br.trim()]);
                    }
                }
            }
        }
        for child in [self.vswitchd.take(), self.db_server.take()]
            .into_iter()
            .flatten()
        {
            stop_child(child);
        }
    }
}

impl Drop for PrivateOvs {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for(path: &Path, what: &str) -> Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(NetworkError::Command {
                program: what.into(),
                message: format!("{} did not appear within 10 s", path.display()),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// SIGTERM, up to 5 s for the child to go, then SIGKILL; always reaped.
pub(crate) fn stop_child(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}
