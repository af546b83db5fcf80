//! A tiny BusyBox image from Debian's busybox-static binary: quick to build,
//! quick to boot, used by tests.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::workdir::BuildDir;
use super::{
    clear_stamp, force_symlink, host_debian_arch, is_cached, pack, write_file,
    write_image_metadata, write_stamp, BuildEvent, HOSTNAME_TEMPLATES,
};
use crate::error::{ImageError, IoContext};
use crate::process::run;

const BUSYBOX: &str = "/bin/busybox";

/// Stopping BusyBox init (init/init.c: `check_delayed_sigs` →
/// `halt_reboot_pwoff`): SIGUSR1 = halt, SIGUSR2 = poweroff, SIGTERM = reboot,
/// and in current versions SIGPWR = halt as well. Each runs the `::shutdown:`
/// actions, sends SIGTERM then SIGKILL to all processes and calls reboot(2);
/// inside a PID namespace that kills the container's init with SIGINT
/// (halt/poweroff) or SIGHUP (reboot). Debian bookworm's 1.35 handles SIGPWR
/// (checked by tests/busybox.rs), so LXD's default stop signal works and no
/// `kante.stop_signal` property is needed. Older versions are not known to
/// handle it; for those the image publishes SIGUSR2, which every version has.
pub const BUSYBOX_FALLBACK_STOP_SIGNAL: &str = "SIGUSR2";

/// Oldest BusyBox whose SIGPWR handling we verified.
const SIGPWR_VERIFIED_SINCE: (u32, u32) = (1, 35);

fn stop_signal_property(version: &str) -> Option<&'static str> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (v < SIGPWR_VERIFIED_SINCE).then_some(BUSYBOX_FALLBACK_STOP_SIGNAL)
}

/// No getty and no respawn: init just reaps children until told to stop.
/// The runtime provides /proc, /sys, /dev, /run and /tmp, so nothing is mounted.
const INITTAB: &str = "\
::sysinit:/bin/hostname -F /etc/hostname
::shutdown:/bin/true
";

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";
const SHADOW: &str = "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n";
const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// Builds a BusyBox image tarball at `out` (zstd-compressed unified tarball).
pub fn build_busybox(
    out: &Path,
    events: &mut dyn FnMut(BuildEvent),
) -> Result<PathBuf, ImageError> {
    let busybox = Path::new(BUSYBOX);
    let install_hint = || ImageError::MissingTool {
        tool: "busybox (static)".into(),
        hint: "install it with `apt-get install busybox-static`".into(),
    };
    let binary = fs::read(busybox).map_err(|_| install_hint())?;
    if !is_static_elf(&binary) {
        // The dynamic `busybox` package would need the host's libc in the image.
        return Err(install_hint());
    }
    let version = busybox_version(busybox)?;
    let arch = host_debian_arch();
    let recipe = format!("busybox-{version}-{arch}");
    if is_cached(out, &recipe) {
        events(BuildEvent::Phase("cached".into()));
        return Ok(out.to_path_buf());
    }
    clear_stamp(out);

    events(BuildEvent::Phase("rootfs".into()));
    let work = BuildDir::new_next_to(out)?;
    let rootfs = work.path().join("rootfs");
    for (dir, mode) in [
        ("", 0o755),
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("var/log", 0o755),
        ("mnt", 0o755),
        ("home", 0o755),
        ("root", 0o700),
    ] {
        let p = rootfs.join(dir);
        fs::create_dir_all(&p).ctx(|| format!("creating {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .ctx(|| format!("chmod {}", p.display()))?;
    }
    let target = rootfs.join("bin/busybox");
    fs::write(&target, &binary).ctx(|| format!("writing {}", target.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .ctx(|| format!("chmod {}", target.display()))?;

    let list = run(
        Command::new(busybox).arg("--list-full"),
        "busybox",
        "busybox-static",
    )?;
    let list = String::from_utf8_lossy(&list);
    let mut applets = 0u64;
    for applet in list.lines().map(str::trim) {
        // linuxrc is for initrds; bin/busybox is the binary itself.
        if applet.is_empty()
            || applet == "bin/busybox"
            || applet == "linuxrc"
            || applet.contains("..")
        {
            continue;
        }
        force_symlink("/bin/busybox", &rootfs.join(applet))?;
        applets += 1;
    }
    events(BuildEvent::Log(format!("linked {applets} applets")));
    force_symlink("/bin/busybox", &rootfs.join("sbin/init"))?;

    let etc = rootfs.join("etc");
    write_file(&etc.join("inittab"), INITTAB, 0o644)?;
    write_file(&etc.join("passwd"), PASSWD, 0o644)?;
    write_file(&etc.join("group"), GROUP, 0o644)?;
    write_file(&etc.join("shadow"), SHADOW, 0o640)?;
    write_file(&etc.join("hostname"), "busybox\n", 0o644)?;
    write_file(&etc.join("hosts"), HOSTS, 0o644)?;

    let mut properties: BTreeMap<String, String> = [
        ("os", "busybox".to_string()),
        ("release", version.clone()),
        ("architecture", arch.to_string()),
        ("description", format!("BusyBox {version} (kante build)")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(sig) = stop_signal_property(&version) {
        properties.insert("kante.stop_signal".into(), sig.into());
    }
    write_image_metadata(work.path(), arch, properties, &HOSTNAME_TEMPLATES)?;
    pack(work.path(), out, events)?;
    drop(work);
    write_stamp(out, &recipe)?;
    Ok(out.to_path_buf())
}

/// "1.35.0" from "BusyBox v1.35.0 (Debian 1:1.35.0-4) multi-call binary."
fn busybox_version(busybox: &Path) -> Result<String, ImageError> {
    let out = run(
        Command::new(busybox).arg("--help"),
        "busybox",
        "busybox-static",
    )?;
    parse_version(&String::from_utf8_lossy(&out)).ok_or_else(|| {
        ImageError::Build("cannot tell the busybox version from `busybox --help`".into())
    })
}

fn parse_version(help: &str) -> Option<String> {
    let first = help.lines().next()?;
    let v = first.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    v.chars().next()?.is_ascii_digit().then(|| v.to_string())
}

/// An ELF executable without a PT_INTERP program header needs no dynamic loader.
fn is_static_elf(bin: &[u8]) -> bool {
    if bin.len() < 64 || &bin[..4] != b"\x7fELF" || bin[5] != 1 {
        return false; // not ELF, or big-endian (not a Debian host we support)
    }
    let u16_at = |o: usize| {
        bin.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        bin.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    let u64_at = |o: usize| {
        bin.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    let (phoff, phentsize, phnum) = match bin[4] {
        2 => (u64_at(0x20), u16_at(0x36), u16_at(0x38)),
        1 => (u32_at(0x1c), u16_at(0x2a), u16_at(0x2c)),
        _ => return false,
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        return false;
    };
    const PT_INTERP: usize = 3;
    (0..phnum).all(|i| {
        let p_type = phoff.checked_add(i * phentsize).and_then(u32_at);
        p_type.is_some_and(|t| t != PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_busybox_version() {
        assert_eq!(
            parse_version("BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) multi-call binary.\n").as_deref(),
            Some("1.35.0")
        );
        assert_eq!(parse_version("nonsense"), None);
    }

    #[test]
    fn stop_signal_only_for_unverified_versions() {
        assert_eq!(stop_signal_property("1.35.0"), None);
        assert_eq!(stop_signal_property("1.37.0"), None);
        assert_eq!(stop_signal_property("2.0"), None);
        assert_eq!(stop_signal_property("1.30.1"), Some("SIGUSR2"));
        assert_eq!(stop_signal_property("garbage"), Some("SIGUSR2"));
    }

    #[test]
    fn tells_static_from_dynamic() {
        if let Ok(bb) = fs::read(BUSYBOX) {
            assert!(is_static_elf(&bb));
        }
        // /bin/sh is dynamically linked on Debian.
        let sh = fs::read("/bin/sh").unwrap();
        assert!(!is_static_elf(&sh));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }
}
