//! Terminal programs (`kante console`, `lxc console`) driven on a pty by
//! `support/pty_drive.py`: keys sent, output expected, the window resized.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

/// What lxc and kante print before attaching.
pub const DETACH_HINT: &str = "To detach from the console, press: <ctrl>+a q";

fn driver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("support/pty_drive.py")
}

/// Runs `cmd` (program, arguments, environment) on a pty of `size`
/// (columns, rows) through `steps` (see pty_drive.py); the driver's
/// report: `ok`, `failed`, `code`, `output`.
pub fn drive(cmd: Command, size: (u16, u16), steps: Value) -> Value {
    let mut py = Command::new("python3");
    py.arg(driver())
        .arg(steps.to_string())
        .arg(size.0.to_string())
        .arg(size.1.to_string())
        .arg("--")
        .arg(cmd.get_program());
    py.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    let out = py.output().expect("python3");
    assert!(
        out.status.success(),
        "pty driver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the driver's report")
}

/// `steps`, then Ctrl+a, a pause (lxc looks only at the first byte of
/// each read) and q: a detach.
pub fn then_detach(steps: Value) -> Value {
    let mut all = steps.as_array().expect("a list of steps").clone();
    all.extend([
        json!(["send", "\u{1}"]),
        json!(["pause", 0.5]),
        json!(["send", "q"]),
    ]);
    Value::Array(all)
}

/// Whether every step happened and the program exited with 0.
pub fn clean(report: &Value) -> bool {
    report["ok"] == true && report["code"] == 0
}
