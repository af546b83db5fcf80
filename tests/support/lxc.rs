//! Debian's `lxc` against a test daemon with a client configuration of its
//! own (several per daemon: an admin, a user), for the tests where lxc is
//! the client that matters (image copies, migrations).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::{free_port, Daemon};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A scratch client configuration under the daemon's dir.
pub fn conf(d: &Daemon, name: &str) -> PathBuf {
    let c = d.dir.join(format!("client-{name}"));
    std::fs::create_dir_all(c.join("home")).unwrap();
    c
}

/// `lxc ARGS` with config `conf`, `local:` being `d`'s unix socket, not run.
pub fn lxc_cmd(d: &Daemon, conf: &Path, cmd: &str) -> Command {
    let mut c = Command::new("lxc");
    c.args(cmd.split_whitespace())
        .env("LXD_DIR", &d.dir)
        .env("LXD_CONF", conf)
        .env("HOME", conf.join("home"))
        .stdin(Stdio::null());
    c
}

pub fn lxc(d: &Daemon, conf: &Path, cmd: &str) -> Output {
    lxc_cmd(d, conf, cmd).output().expect("run lxc")
}

/// Must succeed; its stdout.
pub fn lxc_ok(d: &Daemon, conf: &Path, cmd: &str) -> String {
    let o = lxc(d, conf, cmd);
    assert!(
        o.status.success(),
        "lxc {cmd} failed: {}{}\n{}",
        text(&o.stdout),
        text(&o.stderr),
        d.log_text()
    );
    text(&o.stdout)
}

/// Must fail; its stderr.
pub fn lxc_fails(d: &Daemon, conf: &Path, cmd: &str) -> String {
    let o = lxc(d, conf, cmd);
    assert!(!o.status.success(), "lxc {cmd} succeeded");
    text(&o.stderr)
}

/// Makes `d` listen on a fresh loopback port with trust password `sesame`.
pub fn serve_https(d: &Daemon, admin: &Path) -> u16 {
    let port = free_port();
    lxc_ok(
        d,
        admin,
        &format!("config set core.https_address 127.0.0.1:{port}"),
    );
    lxc_ok(d, admin, "config set core.trust_password sesame");
    port
}
