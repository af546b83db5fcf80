//! `kante lab exec HOST -- CMD…`: runs CMD in the host's network namespace
//! as that host sees the world: `KANTE_DIR` its daemon's directory,
//! `KANTE_CONF` its client configuration (remotes to every other host),
//! and this `kante`'s directory first on `PATH`.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::names;
use super::record::Record;
use super::sys;

pub fn exec(name: &str, dir: &Path, host: &str, command: &[String]) -> Result<i32> {
    let Some(rec) = Record::load(dir)? else {
        bail!("No lab named {name} ({} has no lab record)", dir.display());
    };
    let i = names::host_index(host, rec.hosts)?;
    let Some((program, args)) = command.split_first() else {
        bail!("No command given: kante lab exec HOST -- CMD [ARG…]");
    };
    let ns_path = sys::netns_path(&names::netns(name, i));
    let ns = std::fs::File::open(&ns_path)
        .with_context(|| format!("The host's namespace {} is missing", ns_path.display()))?;
    let mut path = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.as_os_str().to_owned()))
        .unwrap_or_default();
    if let Some(p) = std::env::var_os("PATH") {
        path.push(":");
        path.push(p);
    }
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("KANTE_DIR", super::state_dir(dir, i))
        .env("KANTE_CONF", super::client_dir(dir, i))
        .env("PATH", path);
    // SAFETY: only setns(2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            use std::os::fd::AsFd;
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
    let status = cmd
        .status()
        .with_context(|| format!("Failed to run {program}"))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
