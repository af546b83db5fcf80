//! LXD's side of the move figures (`moves.rs`): two private LXD 5.0.2
//! daemons (Debian's `lxd`), one in each lab host's network namespace,
//! each with its own `LXD_DIR` (`/tmp/kante-bench-lxd-<i>`), HTTPS on the
//! host's uplink address at port 8543 (kanted has 8443 there), the `dir`
//! pool `default` and a loop-backed btrfs pool `bt` (6 GiB, as Kante's).
//! Debian's `lxc` reaches both as remotes `lxd1` and `lxd2` through a
//! private `LXD_CONF`, so the user's `~/.config/lxc` is left alone.
//! Dropping the pair stops both daemons and removes every trace (see
//! `kante_integration::lxd::Lxd`) and the client configuration.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use kante_integration::lab::Lab;
use kante_integration::lxd::Lxd;

use crate::moves::Side;

/// LXD's HTTPS port on each lab host.
const PORT: u16 = 8543;

pub struct LxdPair {
    lxds: Vec<Lxd>,
    conf: PathBuf,
    addresses: [String; 2],
}

impl LxdPair {
    /// Starts both, makes the btrfs pools, and adds both as remotes of a
    /// private `lxc` configuration (trust password). An error carries the
    /// failing daemon's log.
    pub fn start(lab: &Lab) -> Result<LxdPair> {
        if !Lxd::available() {
            anyhow::bail!("/usr/bin/lxd is not installed (--install-lxd installs it)");
        }
        let conf = PathBuf::from("/tmp/kante-bench-lxd-conf");
        let _ = std::fs::remove_dir_all(&conf);
        let mut pair = LxdPair {
            lxds: Vec::new(),
            conf,
            addresses: [lab.address(1), lab.address(2)],
        };
        for i in 1..=2u32 {
            let dir = PathBuf::from(format!("/tmp/kante-bench-lxd-{i}"));
            let lxd = Lxd::try_start_in(Some(&lab.netns(i)), &lab.address(i), PORT, dir)
                .map_err(|e| anyhow!("LXD {i} in {}: {e}", lab.netns(i)))?;
            pair.lxds.push(lxd);
        }
        let side = pair.side();
        for i in 1..=2 {
            let url = format!("https://{}:{PORT}", pair.addresses[i - 1]);
            side.cli(&[
                "remote",
                "add",
                &side.remotes[i - 1],
                &url,
                "--password",
                "sesame",
                "--accept-certificate",
            ])?;
            side.cli(&[
                "storage",
                "create",
                &format!("{}:bt", side.remotes[i - 1]),
                "btrfs",
                "size=6GiB",
            ])?;
        }
        Ok(pair)
    }

    /// Both daemons as one side of the comparison.
    pub fn side(&self) -> Side {
        let dir = |i: usize| self.lxds[i].dir.clone();
        Side {
            name: "lxd",
            program: PathBuf::from("lxc"),
            env: ("LXD_CONF", self.conf.clone()),
            remotes: ["lxd1".into(), "lxd2".into()],
            states: [dir(0), dir(1)],
            sockets: [dir(0).join("unix.socket"), dir(1).join("unix.socket")],
            monitor_needle: "[lxc monitor]",
        }
    }
}

impl Drop for LxdPair {
    fn drop(&mut self) {
        for l in &mut self.lxds {
            l.stop();
            let left = l.leftovers();
            if !left.is_empty() {
                eprintln!("LXD in {} left: {left:?}", l.dir.display());
            }
        }
        let _ = std::fs::remove_dir_all(&self.conf);
    }
}
