//! Debian system-container image: debootstrap (minbase) + cloud-init,
//! systemd-networkd/resolved, openssh, tuned so that a container boots to a
//! non-degraded state and every instance gets its own identity.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::workdir::{remove_tree, BuildDir, ChrootMounts};
use super::{
    clear_stamp, force_symlink, host_debian_arch, is_cached, pack, serial_now, write_file,
    write_image_metadata, write_stamp, BuildEvent, Template, DEFAULT_MIRROR, HOSTNAME_TEMPLATES,
};
use crate::error::{ImageError, IoContext};
use crate::process::run_streaming;

/// Options of a Debian build.
#[derive(Debug, Clone)]
pub struct DebianBuild {
    /// Release codename, e.g. "bookworm".
    pub release: String,
    /// Debian architecture, e.g. "amd64"; must be the host's.
    pub arch: String,
    /// Debian mirror, default [`DEFAULT_MIRROR`].
    pub mirror: String,
    /// Where downloaded .debs are kept between builds.
    pub cache_dir: PathBuf,
    /// Packages installed beside cloud-init (Debian's `docker.io` for the
    /// `debian-docker` recipe).
    pub extra_packages: Vec<String>,
}

impl DebianBuild {
    pub fn new(release: &str, cache_dir: &Path) -> Self {
        DebianBuild {
            release: release.to_string(),
            arch: host_debian_arch().to_string(),
            mirror: DEFAULT_MIRROR.to_string(),
            cache_dir: cache_dir.to_path_buf(),
            extra_packages: Vec::new(),
        }
    }

    /// The recipe's name: `debian-RELEASE-ARCH`, `debian-docker-…` with
    /// Docker.
    pub fn recipe_name(&self) -> String {
        if self.extra_packages.is_empty() {
            format!("debian-{}-{}", self.release, self.arch)
        } else {
            format!("debian-docker-{}-{}", self.release, self.arch)
        }
    }
}

/// Installed by debootstrap. cloud-init is not here: debootstrap's resolver
/// cannot handle its dependencies, so apt installs it afterwards. dbus keeps
/// logind from failing; libcap2-bin lets iputils-ping get its capability
/// instead of the setuid fallback.
const PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "dbus",
    "iproute2",
    "ca-certificates",
    "openssh-server",
    "systemd-resolved",
    "iputils-ping",
    "libcap2-bin",
    "procps",
    "netbase",
    "sudo",
];

/// Units that cannot work in a container and would otherwise fail
/// (state "degraded") or, for firstboot, wait for console input because the
/// machine-id is empty on first boot.
const MASKED_UNITS: &[&str] = &[
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-firstboot.service",
    "e2scrub_reap.service",
    "e2scrub_all.timer",
];

const NETWORK_ETH0: &str = "\
# Written by kante image build: DHCP (IPv4 and IPv6) on the container's eth0.
[Match]
Name=eth0

[Network]
DHCP=yes
";

/// network-online.target is pulled in by cloud-init; a container without
/// eth0 or without a DHCP server must neither fail (the default after 2
/// minutes, leaving the system "degraded") nor hold cloud-init back for long.
const WAIT_ONLINE_DROPIN: &str = "\
[Service]
ExecStart=
ExecStart=-/lib/systemd/systemd-networkd-wait-online --any --timeout=15
";

/// bookworm's openssh-server only creates host keys in its postinst, and
/// they are removed from the image; this regenerates them on first boot,
/// with or without cloud-init (ordered after it so the two never race).
const SSH_KEYGEN_UNIT: &str = "\
[Unit]
Description=Generate missing SSH host keys
Before=ssh.service
After=cloud-init.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target ssh.service
";

/// Networking is owned by systemd-networkd, so cloud-init renders the seed's
/// network config for it (bookworm's 22.4 has a networkd renderer; eni and
/// netplan are not installed); the image's own eth0 DHCP file stays as the
/// fallback (cloud-init's `10-cloud-init-<if>.network` sorts before it and
/// wins). Only look for the seeds the daemon provides, never probe cloud
/// metadata services over the network. The locale module needs the
/// `locales` package (update-locale), which is not installed: without this,
/// cloud-config.service fails (checked by booting the image under
/// systemd-nspawn).
const CLOUD_CFG: &str = "\
# Written by kante image build.
system_info:
  network:
    renderers: [networkd]
    activators: [networkd]
datasource_list: [NoCloud, LXD]
locale: false
";

const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// cloud-init NoCloud seeds, rendered per instance from its config like the
/// public "cloud" images do, on every start: the daemon gives a new
/// `volatile.cloud-init.instance-id` when the cloud-init keys change, and
/// that new instance-id is what makes cloud-init run again.
const CLOUD_TEMPLATES: [Template; 4] = [
    Template {
        path: "/var/lib/cloud/seed/nocloud-net/meta-data",
        file: "cloud-init-meta.tpl",
        content:
            "instance-id: {{ config_get(\"volatile.cloud-init.instance-id\", instance.name) }}\n\
                  local-hostname: {{ instance.name }}\n\
                  {{ config_get(\"user.meta-data\", \"\") }}\n",
        properties: &[],
        when: SEED_WHEN,
    },
    Template {
        path: "/var/lib/cloud/seed/nocloud-net/user-data",
        file: "cloud-init-user.tpl",
        content: "{{ config_get(\"user.user-data\", properties.default) }}\n",
        properties: &[("default", "#cloud-config\n{}")],
        when: SEED_WHEN,
    },
    Template {
        path: "/var/lib/cloud/seed/nocloud-net/vendor-data",
        file: "cloud-init-vendor.tpl",
        content: "{{ config_get(\"user.vendor-data\", properties.default) }}\n",
        properties: &[("default", "#cloud-config\n{}")],
        when: SEED_WHEN,
    },
    Template {
        path: "/var/lib/cloud/seed/nocloud-net/network-config",
        file: "cloud-init-network.tpl",
        content: NETWORK_CONFIG_TEMPLATE,
        properties: &[],
        when: SEED_WHEN,
    },
];

const SEED_WHEN: &[&str] = &["create", "copy", "start"];

/// The instance's `user.network-config`, else DHCP on its first NIC (in
/// device-name order, by the name the guest gives it). `nics` is Kante's;
/// under LXD it is empty and the default falls back to eth0.
const NETWORK_CONFIG_TEMPLATE: &str = "\
{% if config_get(\"user.network-config\", \"\") == \"\" %}version: 1
config:{% for nic in nics %}{% if forloop.first %}
  - type: physical
    name: {{ nic.name }}
    subnets:
      - type: dhcp
        control: auto{% endif %}{% empty %}
  - type: physical
    name: eth0
    subnets:
      - type: dhcp
        control: auto{% endfor %}
{% else %}{{ config_get(\"user.network-config\", \"\") }}
{% endif %}";

/// Builds a Debian image tarball at `out` (zstd-compressed unified tarball).
pub fn build_debian(
    opts: &DebianBuild,
    out: &Path,
    events: &mut dyn FnMut(BuildEvent),
) -> Result<PathBuf, ImageError> {
    let recipe = opts.recipe_name();
    if is_cached(out, &recipe) {
        events(BuildEvent::Phase("cached".into()));
        return Ok(out.to_path_buf());
    }
    clear_stamp(out);
    if opts.arch != host_debian_arch() {
        return Err(ImageError::Build(format!(
            "cannot build {} images on a {} host",
            opts.arch,
            host_debian_arch()
        )));
    }
    let cache = std::path::absolute(
        opts.cache_dir
            .join(format!("debootstrap-{}-{}", opts.release, opts.arch)),
    )
    .ctx(|| format!("resolving {}", opts.cache_dir.display()))?;
    fs::create_dir_all(&cache).ctx(|| format!("creating {}", cache.display()))?;

    let work = BuildDir::new_next_to(out)?;
    let rootfs = work.path().join("rootfs");
    debootstrap(opts, &rootfs, &cache, events)?;

    let mounts = ChrootMounts::mount(&rootfs)?;
    let inside = install_and_configure(&rootfs, &opts.extra_packages, events);
    let unmounted = mounts.unmount();
    inside?;
    unmounted?;

    finalize(opts, &rootfs)?;
    let properties: BTreeMap<String, String> = [
        ("os", "debian".to_string()),
        ("release", opts.release.clone()),
        ("architecture", opts.arch.clone()),
        (
            "description",
            format!("Debian {} {} (kante build)", opts.release, opts.arch),
        ),
        ("variant", "cloud".to_string()),
        ("serial", serial_now()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let templates: Vec<Template> = HOSTNAME_TEMPLATES
        .into_iter()
        .chain(CLOUD_TEMPLATES)
        .collect();
    write_image_metadata(work.path(), &opts.arch, properties, &templates)?;
    pack(work.path(), out, events)?;
    drop(work);
    write_stamp(out, &recipe)?;
    Ok(out.to_path_buf())
}

/// Runs debootstrap, turning its `I: ...` lines into logs and rough progress.
fn debootstrap(
    opts: &DebianBuild,
    rootfs: &Path,
    cache: &Path,
    events: &mut dyn FnMut(BuildEvent),
) -> Result<(), ImageError> {
    events(BuildEvent::Phase("debootstrap".into()));
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase")
        .arg(format!("--arch={}", opts.arch))
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(format!("--cache-dir={}", cache.display()))
        .arg("--components=main")
        .arg(&opts.release)
        .arg(rootfs)
        .arg(&opts.mirror)
        .env("LC_ALL", "C");
    let mut progress = DebootstrapProgress::default();
    let result = run_streaming(&mut cmd, "debootstrap", "debootstrap", &mut |line| {
        if let Some(p) = progress.line(line) {
            events(p);
        }
        events(BuildEvent::Log(line.to_string()));
    });
    result.map_err(|e| match e {
        ImageError::Tool { tool, message } => {
            // debootstrap's own log has the failing package script's output.
            let log =
                fs::read_to_string(rootfs.join("debootstrap/debootstrap.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(6).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            ImageError::Tool {
                tool,
                message: if tail.is_empty() {
                    message
                } else {
                    format!("{message} | debootstrap.log: {}", tail.join(" | "))
                },
            }
        }
        other => other,
    })
}

/// debootstrap does not announce how many packages it will handle until it
/// has fetched them; a guess is used until then. Units (doubled to stay in
/// integers): retrieve = 2, extract = 1, unpack = 1, configure = 2 per package.
#[derive(Default)]
struct DebootstrapProgress {
    retrieved: u64,
    done: u64,
    known_total: Option<u64>,
}

impl DebootstrapProgress {
    const GUESS: u64 = 150;

    fn line(&mut self, line: &str) -> Option<BuildEvent> {
        let msg = line.strip_prefix("I: ")?;
        let word = msg.split(' ').next().unwrap_or("");
        let rest = &msg[word.len()..];
        match word {
            // "Retrieving InRelease/Packages/Release" are index files, not packages.
            "Retrieving"
                if !matches!(
                    rest.trim(),
                    "InRelease" | "Release" | "Release.gpg" | "Packages"
                ) =>
            {
                self.retrieved += 1;
                self.done += 2;
            }
            "Extracting" | "Unpacking" | "Configuring" => {
                self.known_total.get_or_insert(self.retrieved);
                self.done += if word == "Configuring" { 2 } else { 1 };
            }
            _ => return None,
        }
        let packages = self
            .known_total
            .unwrap_or_else(|| self.retrieved.max(Self::GUESS));
        let total = packages * 6;
        Some(BuildEvent::Progress {
            done: self.done.min(total),
            total,
        })
    }
}

fn chroot(rootfs: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("chroot");
    c.arg(rootfs)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("LC_ALL", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive");
    c
}

fn run_in(
    rootfs: &Path,
    args: &[&str],
    events: &mut dyn FnMut(BuildEvent),
) -> Result<(), ImageError> {
    let tool = format!("chroot {}", args.join(" "));
    run_streaming(&mut chroot(rootfs, args), &tool, "coreutils", &mut |l| {
        events(BuildEvent::Log(l.to_string()))
    })
}

/// Everything that needs the chroot mounts: apt (cloud-init) and systemctl.
fn install_and_configure(
    rootfs: &Path,
    extra: &[String],
    events: &mut dyn FnMut(BuildEvent),
) -> Result<(), ImageError> {
    events(BuildEvent::Phase("apt".into()));
    // The image's resolv.conf points at resolved, which is not running in the
    // chroot; apt needs the host's resolver while building.
    let host_resolv = fs::read_to_string("/etc/resolv.conf")
        .ctx(|| "reading the host's /etc/resolv.conf".into())?;
    write_file(&rootfs.join("etc/resolv.conf"), &host_resolv, 0o644)?;
    // Never start services inside the build chroot.
    write_file(
        &rootfs.join("usr/sbin/policy-rc.d"),
        "#!/bin/sh\nexit 101\n",
        0o755,
    )?;
    run_in(rootfs, &["apt-get", "update"], events)?;
    let mut install = vec![
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        "cloud-init",
    ];
    install.extend(extra.iter().map(String::as_str));
    run_in(rootfs, &install, events)?;
    run_in(rootfs, &["apt-get", "clean"], events)?;

    events(BuildEvent::Phase("configure".into()));
    let etc = rootfs.join("etc");
    write_file(
        &etc.join("systemd/network/10-eth0.network"),
        NETWORK_ETH0,
        0o644,
    )?;
    write_file(
        &etc.join("systemd/system/systemd-networkd-wait-online.service.d/kante.conf"),
        WAIT_ONLINE_DROPIN,
        0o644,
    )?;
    write_file(
        &etc.join("systemd/system/kante-ssh-keygen.service"),
        SSH_KEYGEN_UNIT,
        0o644,
    )?;
    write_file(
        &etc.join("cloud/cloud.cfg.d/99-kante.cfg"),
        CLOUD_CFG,
        0o644,
    )?;
    run_in(
        rootfs,
        &[
            "systemctl",
            "enable",
            "systemd-networkd.service",
            "systemd-resolved.service",
            "kante-ssh-keygen.service",
        ],
        events,
    )?;
    for unit in MASKED_UNITS {
        force_symlink("/dev/null", &etc.join("systemd/system").join(unit))?;
    }
    // iputils-ping falls back to setuid if libcap2-bin was configured after it.
    let ping = rootfs.join("usr/bin/ping");
    if !crate::xattr::has(&ping, "security.capability") {
        run_in(
            rootfs,
            &["setcap", "cap_net_raw+ep", "/usr/bin/ping"],
            events,
        )?;
        run_in(rootfs, &["chmod", "u-s", "/usr/bin/ping"], events)?;
    }
    Ok(())
}

/// Per-instance identity out, final config in, caches out.
fn finalize(opts: &DebianBuild, rootfs: &Path) -> Result<(), ImageError> {
    let etc = rootfs.join("etc");
    // debootstrap copied the build host's; the daemon sets the real name.
    write_file(&etc.join("hostname"), "localhost\n", 0o644)?;
    write_file(&etc.join("hosts"), HOSTS, 0o644)?;
    // Empty (not missing): systemd generates a fresh id on first boot.
    write_file(&etc.join("machine-id"), "", 0o444)?;
    remove_if_exists(&rootfs.join("var/lib/dbus/machine-id"))?;
    for entry in fs::read_dir(etc.join("ssh")).ctx(|| "listing /etc/ssh".into())? {
        let p = entry.ctx(|| "listing /etc/ssh".into())?.path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("ssh_host_"))
        {
            remove_if_exists(&p)?;
        }
    }
    remove_if_exists(&rootfs.join("usr/sbin/policy-rc.d"))?;
    // Relative, so host-side tools resolving it inside the rootfs stay inside.
    force_symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        &etc.join("resolv.conf"),
    )?;
    let m = opts.mirror.trim_end_matches('/');
    let r = &opts.release;
    write_file(
        &etc.join("apt/sources.list"),
        &format!(
            "deb {m} {r} main\ndeb {m} {r}-updates main\n\
             deb http://deb.debian.org/debian-security {r}-security main\n"
        ),
        0o644,
    )?;
    // apt-get clean already emptied /var/cache/apt; the package lists are
    // refetched by `apt-get update` (their `partial/` dir must stay).
    let lists = rootfs.join("var/lib/apt/lists");
    if let Ok(rd) = fs::read_dir(&lists) {
        for e in rd.flatten() {
            if !e.path().is_dir() {
                remove_if_exists(&e.path())?;
            }
        }
    }
    for dir in ["tmp", "var/tmp", "run"] {
        empty_dir(&rootfs.join(dir))?;
    }
    let debconf = rootfs.join("var/cache/debconf");
    if let Ok(rd) = fs::read_dir(&debconf) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with("-old") {
                remove_if_exists(&e.path())?;
            }
        }
    }
    truncate_logs(&rootfs.join("var/log"))
}

fn remove_if_exists(p: &Path) -> Result<(), ImageError> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ImageError::io(format!("removing {}", p.display()), e))
        }
        _ => Ok(()),
    }
}

/// Removes the contents of `dir`, keeping the directory itself.
fn empty_dir(dir: &Path) -> Result<(), ImageError> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd {
        let p = e.ctx(|| format!("listing {}", dir.display()))?.path();
        remove_tree(&p).ctx(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// Keeps log files (and their ownership) but drops the build's content.
fn truncate_logs(dir: &Path) -> Result<(), ImageError> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = p.symlink_metadata() else {
            continue;
        };
        if m.is_dir() {
            truncate_logs(&p)?;
        } else if m.is_file() && m.len() > 0 {
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&p)
                .ctx(|| format!("truncating {}", p.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debootstrap_progress_is_monotonic_and_bounded() {
        let mut p = DebootstrapProgress::default();
        let mut lines = vec![
            "I: Retrieving InRelease".to_string(),
            "I: Retrieving Packages".into(),
        ];
        for i in 0..100 {
            lines.push(format!("I: Retrieving pkg{i} 1.0"));
            lines.push(format!("I: Validating pkg{i} 1.0"));
        }
        for i in 0..100 {
            lines.push(format!("I: Extracting pkg{i}..."));
        }
        for i in 0..100 {
            lines.push(format!("I: Unpacking pkg{i}..."));
        }
        for i in 0..100 {
            lines.push(format!("I: Configuring pkg{i}..."));
        }
        let mut last = 0.0f64;
        let mut events = 0;
        for l in &lines {
            if let Some(BuildEvent::Progress { done, total }) = p.line(l) {
                events += 1;
                assert!(done <= total);
                let frac = done as f64 / total as f64;
                assert!(frac + 1e-9 >= last, "{l}: {frac} < {last}");
                last = frac;
            }
        }
        assert_eq!(events, 400);
        assert!(last > 0.99, "{last}");
    }

    /// The seed templates render to what cloud-init reads: YAML meta-data
    /// with the instance-id, and a v1 network config (DHCP on the first NIC
    /// by default, the user's as given otherwise).
    #[test]
    fn cloud_init_templates_render() {
        use crate::template::{render, Context, Value};
        let seed = |config: &[(&str, &str)], nics: &[&str]| {
            let cfg: BTreeMap<String, String> = config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let get = move |a: &[Value]| match a.first() {
                Some(Value::Str(k)) if cfg.contains_key(k) => Value::Str(cfg[k].clone()),
                _ => a.get(1).cloned().unwrap_or(Value::Null),
            };
            let mut out = BTreeMap::new();
            for t in CLOUD_TEMPLATES {
                let mut ctx = Context::default();
                let inst = BTreeMap::from([("name".to_string(), "c1")]);
                ctx.vars.insert("instance".into(), Value::from(inst));
                let props: BTreeMap<String, &str> = t
                    .properties
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect();
                ctx.vars.insert("properties".into(), Value::from(props));
                let list = nics
                    .iter()
                    .map(|n| Value::from(BTreeMap::from([("name".to_string(), *n)])))
                    .collect();
                ctx.vars.insert("nics".into(), Value::List(list));
                ctx.functions.insert("config_get".into(), &get);
                out.insert(t.file, render(t.content, &ctx).unwrap());
            }
            out
        };
        let yaml = |s: &str| serde_yaml::from_str::<serde_yaml::Value>(s).unwrap();
        let out = seed(
            &[
                ("volatile.cloud-init.instance-id", "abc"),
                ("user.meta-data", "x: 1"),
            ],
            &["if-a", "if-b"],
        );
        let meta = yaml(&out["cloud-init-meta.tpl"]);
        assert_eq!(meta["instance-id"].as_str(), Some("abc"));
        assert_eq!(meta["local-hostname"].as_str(), Some("c1"));
        assert_eq!(meta["x"].as_u64(), Some(1));
        assert_eq!(out["cloud-init-user.tpl"], "#cloud-config\n{}\n");
        let net = yaml(&out["cloud-init-network.tpl"]);
        assert_eq!(net["version"].as_u64(), Some(1));
        let cfg = net["config"].as_sequence().unwrap();
        assert_eq!(cfg.len(), 1);
        assert_eq!(cfg[0]["name"].as_str(), Some("if-a"));
        assert_eq!(cfg[0]["subnets"][0]["type"].as_str(), Some("dhcp"));
        // No NIC list (LXD): eth0.
        let net = yaml(&seed(&[], &[])["cloud-init-network.tpl"]);
        assert_eq!(net["config"][0]["name"].as_str(), Some("eth0"));
        let given = "version: 2\nethernets:\n  e:\n    dhcp4: true";
        let out = seed(&[("user.network-config", given)], &["eth0"]);
        assert_eq!(out["cloud-init-network.tpl"], format!("{given}\n"));
    }

    /// Slow (several minutes) and needs the Debian mirror:
    /// `cargo test -p kante-images -- --ignored debian_build`.
    #[test]
    #[ignore]
    fn debian_build() {
        let out =
            PathBuf::from(std::env::var("KANTE_DEBIAN_OUT").unwrap_or_else(|_| {
                "/var/cache/kante/images/debian-bookworm-amd64.tar.zst".into()
            }));
        let cache = PathBuf::from("/var/cache/kante/build");
        let opts = DebianBuild::new("bookworm", &cache);
        let start = std::time::Instant::now();
        build_debian(&opts, &out, &mut |e| match e {
            BuildEvent::Log(_) | BuildEvent::Progress { .. } => {}
            other => eprintln!("{other:?}"),
        })
        .unwrap();
        eprintln!(
            "built {} ({} bytes) in {:?}",
            out.display(),
            fs::metadata(&out).unwrap().len(),
            start.elapsed()
        );
    }
}
