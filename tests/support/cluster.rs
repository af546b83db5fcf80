//! Cluster helpers for root tests on a lab (`lab.rs`): `kante` on a host
//! that must succeed or fail with one line, join tokens, the members as
//! `kante cluster list` shows them, waits on a member's state, a
//! 3-member cluster made with `enable`/`add`/`join`, host i's etcd
//! processes, host i's kanted started again after a kill, the one view
//! (`kante list` with locations), which host's storage holds an
//! instance, and Debian's `lxc` against a host; where host i's list
//! places an instance, and a cluster of busybox hosts made in one call.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::bin;
use crate::lab::Lab;

/// stdout and stderr of a command, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `kante ARGS` on host i (its unix socket) must succeed; its stdout.
pub fn on(lab: &Lab, i: u32, args: &[&str]) -> String {
    let o = lab.host_kante(i, args);
    assert!(
        o.status.success(),
        "h{i}: kante {args:?} failed: {}\n{}",
        text(&o),
        lab.log(i)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `kante ARGS` on host i must fail with one line; that line.
pub fn refused(lab: &Lab, i: u32, args: &[&str]) -> String {
    let o = lab.host_kante(i, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "h{i}: kante {args:?} succeeded");
    assert!(
        err.starts_with("Error: ") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    err
}

/// The token `kante cluster add NAME` prints on host i.
pub fn token(lab: &Lab, i: u32, name: &str) -> String {
    let out = on(lab, i, &["cluster", "add", name]);
    out.lines().last().unwrap_or_default().trim().to_string()
}

/// A row of `kante cluster list -f csv`.
#[derive(Debug, Clone)]
pub struct MemberRow {
    pub name: String,
    pub url: String,
    pub roles: String,
    pub state: String,
    pub message: String,
}

/// `kante cluster list -f csv` on host i.
pub fn members(lab: &Lab, i: u32) -> Vec<MemberRow> {
    on(lab, i, &["cluster", "list", "-f", "csv"])
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            MemberRow {
                name: c[0].into(),
                url: c[1].into(),
                roles: c[2].into(),
                state: c[4].into(),
                message: c.get(5).copied().unwrap_or_default().into(),
            }
        })
        .collect()
}

/// Waits until host i lists `member` in `state` (bounded); how long it took.
pub fn await_state(lab: &Lab, i: u32, member: &str, state: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let now = members(lab, i);
        if now.iter().any(|m| m.name == member && m.state == state) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "h{i} did not show {member} {state} within {limit:?}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `kante cluster enable h1` on host 1, then `add`/`join` for every other
/// host; returns once every host sees every member ONLINE.
pub fn form(lab: &Lab) {
    on(lab, 1, &["cluster", "enable", "h1"]);
    for i in 2..=lab.hosts {
        let t = token(lab, 1, &format!("h{i}"));
        on(lab, i, &["cluster", "join", &t]);
    }
    for i in 1..=lab.hosts {
        for j in 1..=lab.hosts {
            await_state(lab, i, &format!("h{j}"), "ONLINE", Duration::from_secs(30));
        }
    }
}

/// Pids whose command line names host i's etcd data directory.
pub fn etcd_pids(lab: &Lab, i: u32) -> Vec<i32> {
    let data = lab.state(i).join("etcd").join("data");
    let data = data.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&data))
                .unwrap_or(false)
        })
        .collect()
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

/// Starts host i's kanted again in its namespace (after a kill), as
/// `kante lab up` does: setns into the host's network namespace only
/// (`ip netns exec` would remount /sys without the cgroups); the child,
/// to reap once the lab is down.
pub fn restart_kanted(lab: &Lab, i: u32) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(lab.dir().join(format!("h{i}")).join("kanted.log"))
        .unwrap();
    let ns = std::fs::File::open(format!("/run/netns/{}", lab.netns(i))).unwrap();
    let mut cmd = Command::new(bin("kanted"));
    // SAFETY: only setns(2) and setsid(2) between fork and exec.
    unsafe {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = ns.as_raw_fd();
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 || libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .env("KANTE_DIR", lab.state(i))
        .env("RUST_LOG", "info")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    on(lab, i, &["wait-ready", "--timeout", "60"]);
    child
}

/// `kante list -f csv -c nsL` on host i: (name, state, location).
pub fn listed(lab: &Lab, i: u32) -> Vec<(String, String, String)> {
    on(lab, i, &["list", "-f", "csv", "-c", "nsL"])
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[0].into(), c[1].into(), c[2].into())
        })
        .collect()
}

/// The member host i's list places `name` on.
pub fn location(lab: &Lab, i: u32, name: &str) -> String {
    let all = listed(lab, i);
    all.iter()
        .find(|r| r.0 == name)
        .map(|r| r.2.clone())
        .unwrap_or_else(|| panic!("{name} not in h{i}'s list: {all:?}"))
}

/// The busybox image imported on every host (aliased `bb`), then the
/// hosts made one cluster ([`form`]); the image's fingerprint.
pub async fn busybox_cluster(lab: &Lab) -> String {
    let mut fp = String::new();
    for i in 1..=lab.hosts {
        fp = lab.import(i, crate::TestImage::Busybox).await;
    }
    on(lab, 1, &["image", "alias", "create", "bb", &fp]);
    form(lab);
    fp
}

/// Whether host i's storage holds instance `name`'s volume.
pub fn holds(lab: &Lab, i: u32, name: &str) -> bool {
    std::fs::read_dir(lab.state(i).join("storage-pools"))
        .map(|pools| {
            pools
                .flatten()
                .any(|p| p.path().join("containers").join(name).exists())
        })
        .unwrap_or(false)
}

/// Exactly host `i` of the lab's hosts holds `name`.
pub fn only_on(lab: &Lab, i: u32, name: &str) {
    for j in 1..=lab.hosts {
        assert_eq!(
            holds(lab, j, name),
            i == j,
            "{name}: expected on h{i} only (h{j})"
        );
    }
}

/// Debian's `lxc ARGS` against host i's unix socket, bounded (120 s): a
/// wait that never ends fails the test instead of hanging it.
pub fn lxc(lab: &Lab, i: u32, home: &std::path::Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("120")
        .arg("lxc")
        .args(args)
        .env("LXD_DIR", lab.state(i))
        .env("LXD_CONF", home.join("conf"))
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Takes the lab down and checks it left nothing: `kante lab down`
/// succeeds, the kanteds started again by the test (`restarted`) are
/// reaped, every etcd of the lab is gone (within 10 s), no host leaks
/// (mounts, cgroups, links, processes) and the lab's directory is gone.
pub fn down_and_check(lab: &mut Lab, restarted: Vec<std::process::Child>) {
    let etcds: Vec<i32> = (1..=lab.hosts).flat_map(|i| etcd_pids(lab, i)).collect();
    let o = lab.down();
    assert!(o.status.success(), "{}", text(&o));
    for mut c in restarted {
        let _ = c.wait();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while etcds.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<&i32> = etcds.iter().filter(|p| alive(**p)).collect();
    assert!(left.is_empty(), "etcd {left:?} left after down");
    for i in 1..=lab.hosts {
        let state = lab.state(i);
        let left = crate::leaks_of(&state, &crate::cgroup_prefix_of(&state));
        assert!(left.is_empty(), "h{i} left: {left:#?}");
    }
    assert!(!lab.dir().exists(), "{} left", lab.dir().display());
}
