//! A lab of hosts on one machine (`kante lab`): each host a network
//! namespace with its own kanted, joined by an uplink bridge in the
//! caller's namespace; the hosts trust each other and the caller.
//!
//! `names` (what is called what), `addr` (the ranges and who gets which
//! address), `record` (`lab.json`: everything made, written before it is
//! made), `sys` (links, processes, cgroups, mounts), `up`, `down`,
//! `status`, `exec`.

pub mod addr;
pub mod down;
pub mod exec;
pub mod names;
pub mod record;
pub mod status;
pub mod sys;
pub mod up;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kante_client::Client;

use crate::cli::lab::{LabUpArgs, LabWhich};

/// Where labs live unless `--dir` says otherwise: `<this>/<name>`.
pub const DEFAULT_ROOT: &str = "/var/lib/kante-lab";

/// A checked `lab up`: nothing is made before all of it is valid.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub dir: PathBuf,
    pub hosts: u32,
    pub plan: addr::Plan,
    pub kanted: PathBuf,
}

impl Spec {
    pub fn from_args(a: &LabUpArgs) -> Result<Spec> {
        let (name, dir) = which(&a.which)?;
        names::check_hosts(a.hosts)?;
        let plan = addr::Plan::new(
            addr::Net::parse(&a.subnet)?,
            addr::Net::parse(&a.bridge_range)?,
            a.hosts,
        )?;
        let kanted = match &a.kanted {
            Some(k) => absolute(k)?,
            None => default_kanted(),
        };
        Ok(Spec {
            name,
            dir,
            hosts: a.hosts,
            plan,
            kanted,
        })
    }

    /// Host `i`'s directory, its `KANTE_DIR` and its client configuration.
    pub fn host_dir(&self, i: u32) -> PathBuf {
        host_dir(&self.dir, i)
    }
}

pub fn host_dir(dir: &Path, i: u32) -> PathBuf {
    dir.join(names::host(i))
}

pub fn state_dir(dir: &Path, i: u32) -> PathBuf {
    host_dir(dir, i).join("state")
}

pub fn client_dir(dir: &Path, i: u32) -> PathBuf {
    host_dir(dir, i).join("client")
}

/// The lab's name (checked) and its absolute directory.
pub fn which(w: &LabWhich) -> Result<(String, PathBuf)> {
    names::check_name(&w.name)?;
    let dir = match &w.dir {
        Some(d) => absolute(d)?,
        None => Path::new(DEFAULT_ROOT).join(&w.name),
    };
    Ok((w.name.clone(), dir))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("Failed to read the current directory")?
        .join(p))
}

/// `kanted` beside this `kante`, else the one on `PATH`.
fn default_kanted() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("kanted")))
        .filter(|k| k.exists())
        .unwrap_or_else(|| PathBuf::from("kanted"))
}

pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("kante lab needs root (it makes network namespaces, bridges and daemons)");
    }
    Ok(())
}

/// Host `i`'s daemon through its unix socket.
pub fn host_client(dir: &Path, i: u32) -> Client {
    Client::with_socket(state_dir(dir, i).join("unix.socket"))
}

/// Whether the daemon answers `GET /1.0` within `limit`.
pub async fn answers(c: &Client, limit: Duration) -> bool {
    matches!(tokio::time::timeout(limit, c.get("/1.0")).await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, hosts: u32, subnet: &str) -> LabUpArgs {
        LabUpArgs {
            which: LabWhich {
                name: name.into(),
                dir: None,
            },
            hosts,
            subnet: subnet.into(),
            bridge_range: "10.249.0.0/16".into(),
            kanted: Some("bin/kanted".into()),
        }
    }

    #[test]
    fn a_spec_is_checked_whole_before_anything_is_made() {
        let s = Spec::from_args(&args("lab", 3, "10.248.0.0/24")).unwrap();
        assert_eq!(s.dir, Path::new("/var/lib/kante-lab/lab"));
        assert_eq!(s.host_dir(2), Path::new("/var/lib/kante-lab/lab/h2"));
        assert_eq!(
            state_dir(&s.dir, 2),
            Path::new("/var/lib/kante-lab/lab/h2/state")
        );
        assert_eq!(
            client_dir(&s.dir, 1),
            Path::new("/var/lib/kante-lab/lab/h1/client")
        );
        assert!(s.kanted.is_absolute() && s.kanted.ends_with("bin/kanted"));
        for (name, hosts, subnet) in [
            ("lab", 0, "10.248.0.0/24"),
            ("lab", 17, "10.248.0.0/24"),
            ("lab", 3, "10.248.0.0"),
            ("lab", 3, "10.248.0.0/30"),
            ("much-too-long", 3, "10.248.0.0/24"),
        ] {
            let e = Spec::from_args(&args(name, hosts, subnet)).unwrap_err();
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_relative_dir_is_made_absolute() {
        let mut a = args("lt", 1, "10.248.0.0/24");
        a.which.dir = Some("rel/lab".into());
        let (_, dir) = which(&a.which).unwrap();
        assert!(dir.is_absolute() && dir.ends_with("rel/lab"));
    }
}
