//! `kante lab down`: removes everything the lab record lists, in an order
//! that leaves nothing behind — instances stopped through each host's API,
//! each kanted stopped (SIGTERM, then SIGKILL), whatever is left in each
//! host's namespace or cgroups killed, mounts under the lab's directory
//! unmounted (deepest first, lazily only as a last resort), namespaces,
//! bridges and veths deleted, the caller's remotes removed, the directory
//! removed. Anything already gone is skipped, so it can run twice, or
//! after a failed `up`; without a record it removes what the lab's names
//! say (`derived`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::names;
use super::record::{Item, Record};
use super::sys::{self, ip};

/// How long a kanted has to stop on SIGTERM.
const DAEMON_GRACE: Duration = Duration::from_secs(15);
/// How long stopping one host's instances may take.
const STOP_INSTANCES: Duration = Duration::from_secs(60);

pub async fn down(name: &str, dir: &Path) -> Result<()> {
    let rec = match Record::load(dir)? {
        Some(r) if r.name != name => bail!(
            "The lab in {} is named {}, not {name}",
            dir.display(),
            r.name
        ),
        Some(r) => r,
        None => derived(name, dir),
    };
    remove(&rec).await?;
    println!("Lab {name} is down");
    Ok(())
}

/// What a lab of this name may have made, when no record says.
pub fn derived(name: &str, dir: &Path) -> Record {
    let mut r = Record::new(name, dir, names::MAX_HOSTS, String::new(), String::new());
    r.items.push(Item::Link {
        name: names::uplink_bridge(name),
    });
    for i in 1..=names::MAX_HOSTS {
        r.items.push(Item::Netns {
            name: names::netns(name, i),
        });
        r.items.push(Item::Link {
            name: names::root_port(name, i),
        });
        r.items.push(Item::Daemon {
            host: i,
            state: super::state_dir(dir, i),
            pid: None,
            start_time: None,
        });
    }
    r
}

/// Removes everything `rec` lists; an error names what is left.
pub async fn remove(rec: &Record) -> Result<()> {
    let mut left = Vec::new();
    let daemons: Vec<(u32, std::path::PathBuf, Option<i32>, Option<u64>)> = rec
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Daemon {
                host,
                state,
                pid,
                start_time,
            } => Some((*host, state.clone(), *pid, *start_time)),
            _ => None,
        })
        .collect();
    for (host, state, _, _) in &daemons {
        stop_instances(&state.join("unix.socket"), *host).await;
    }
    for (_, _, pid, start) in &daemons {
        if let Some(pid) = pid {
            sys::terminate(*pid, *start, DAEMON_GRACE);
        }
    }
    let namespaces: Vec<&str> = rec
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Netns { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    for ns in &namespaces {
        kill_netns(ns);
    }
    for (_, state, _, _) in &daemons {
        for cg in sys::cgroup_dirs(&names::cgroup_prefix(state)) {
            sys::kill_cgroup(&cg);
            if cg.exists() {
                left.push(format!("cgroup {}", cg.display()));
            }
        }
    }
    let mounts = sys::unmount_under(&rec.dir);
    sys::release_loops_under(&rec.dir);
    left.extend(mounts.iter().map(|m| format!("mount {}", m.display())));
    for ns in &namespaces {
        if sys::netns_exists(ns) {
            if let Err(e) = ip(&["netns", "del", ns]) {
                left.push(format!("namespace {ns} ({})", crate::one_line(&e)));
            }
        }
    }
    // Links last, the bridge after its ports; a veth whose peer went with
    // its namespace may take a moment to go.
    for item in rec.items.iter().rev() {
        if let Item::Link { name } = item {
            if !gone(name) {
                let _ = ip(&["link", "del", name]);
                if !gone(name) {
                    left.push(format!("link {name}"));
                }
            }
        }
    }
    for item in &rec.items {
        if let Item::Remote { conf, name } = item {
            if let Err(e) = remove_remote(conf, name) {
                left.push(format!(
                    "remote {name} in {} ({})",
                    conf.display(),
                    crate::one_line(&e)
                ));
            }
        }
    }
    if mounts.is_empty() && rec.dir.exists() && lab_shaped(&rec.dir) {
        if let Err(e) = std::fs::remove_dir_all(&rec.dir) {
            left.push(format!("directory {} ({e})", rec.dir.display()));
        }
    } else if rec.dir.exists() && !mounts.is_empty() {
        left.push(format!("directory {} (mounts inside)", rec.dir.display()));
    } else if rec.dir.exists() {
        left.push(format!(
            "directory {} (it holds more than a lab: remove it yourself)",
            rec.dir.display()
        ));
    }
    if !left.is_empty() {
        bail!(
            "The lab {} is not fully removed: {}",
            rec.name,
            left.join(", ")
        );
    }
    // The default labs' root goes with its last lab (only if empty).
    if rec.dir.parent() == Some(Path::new(super::DEFAULT_ROOT)) {
        let _ = std::fs::remove_dir(super::DEFAULT_ROOT);
    }
    Ok(())
}

/// Force-stops every instance of the host whose socket is `sock`, if its
/// daemon answers.
async fn stop_instances(sock: &Path, host: u32) {
    if !sock.exists() {
        return;
    }
    let c = kante_client::Client::with_socket(sock);
    if !super::answers(&c, Duration::from_secs(2)).await {
        return;
    }
    let work = async {
        for n in c.instance_names().await.unwrap_or_default() {
            if let Err(e) = c.stop_instance(&n, true, -1).await {
                eprintln!("Warning: stopping {n} on h{host}: {e}");
            }
        }
    };
    if tokio::time::timeout(STOP_INSTANCES, work).await.is_err() {
        eprintln!("Warning: stopping the instances of h{host} timed out");
    }
}

/// Whether `dir` holds only what a lab puts there (its record, `h<i>`
/// directories): never remove a directory `--dir` named by mistake.
fn lab_shaped(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().all(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n == super::record::FILE
                || n == ".lab.json.tmp"
                || names::host_index(&n, names::MAX_HOSTS).is_ok()
        })
    })
}

/// Kills every process left in the namespace (dnsmasq, monitors, …).
fn kill_netns(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = sys::pids_in_netns(ns);
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            sys::signal(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the link is gone (waiting a little for one going).
fn gone(name: &str) -> bool {
    for _ in 0..20 {
        if !sys::link_exists(name) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Takes remote `name` out of the configuration in `conf`, with its pinned
/// certificate (as `kante remote remove` does; the default goes back to
/// `local` if it was this one).
fn remove_remote(conf: &Path, name: &str) -> Result<()> {
    let mut cfg = crate::remote::Config::load_from(conf)?;
    if cfg.remotes.remove(name).is_some() {
        if cfg.default_remote == name {
            cfg.default_remote = crate::remote::LOCAL.into();
        }
        cfg.save()?;
    }
    let crt = cfg.server_cert_path(name);
    if crt.exists() {
        std::fs::remove_file(&crt)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lab_without_record_is_known_by_its_names() {
        let r = derived("lt", Path::new("/x/lt"));
        assert!(r.items.contains(&Item::Link {
            name: "klt-up".into()
        }));
        assert!(r.items.contains(&Item::Netns {
            name: "lt-h16".into()
        }));
        assert!(r.items.contains(&Item::Link {
            name: "klt-h1".into()
        }));
        assert_eq!(r.daemon(2).unwrap().0, Path::new("/x/lt/h2/state"));
    }

    #[test]
    fn only_a_lab_shaped_directory_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        assert!(lab_shaped(d));
        std::fs::create_dir_all(d.join("h1/state")).unwrap();
        std::fs::write(d.join(crate::lab::record::FILE), "{}").unwrap();
        assert!(lab_shaped(d));
        std::fs::write(d.join("notes.txt"), "mine").unwrap();
        assert!(!lab_shaped(d));
    }

    #[test]
    fn removing_a_remote_keeps_the_others() {
        let tmp = tempfile::tempdir().unwrap();
        let conf = tmp.path();
        let mut cfg = crate::remote::Config::load_from(conf).unwrap();
        for n in ["lt-h1", "other"] {
            cfg.remotes.insert(
                n.into(),
                crate::remote::Remote {
                    addr: "https://10.1.0.11:8443".into(),
                    protocol: "kante".into(),
                    public: false,
                },
            );
        }
        cfg.default_remote = "lt-h1".into();
        cfg.save().unwrap();
        std::fs::create_dir_all(conf.join("servercerts")).unwrap();
        std::fs::write(cfg.server_cert_path("lt-h1"), "x").unwrap();
        remove_remote(conf, "lt-h1").unwrap();
        // Twice is fine.
        remove_remote(conf, "lt-h1").unwrap();
        let back = crate::remote::Config::load_from(conf).unwrap();
        assert!(!back.has("lt-h1") && back.has("other"));
        assert_eq!(back.default_remote, "local");
        assert!(!back.server_cert_path("lt-h1").exists());
    }
}
