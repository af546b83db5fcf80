//! `linux.kernel_modules`: making sure the host kernel has what a guest
//! asks for before it starts.
//!
//! With loadable module support a missing module is loaded with `modprobe`
//! (and a failure fails the start). A kernel built without it cannot load
//! anything: the feature is looked up where the kernel tells (`/sys/module`,
//! `modules.builtin`, `/proc/filesystems`, `/proc/config.gz`) and, if nothing
//! says either way, the start goes on with a warning that it is assumed built
//! in. The decision is pure over a [`HostView`] so it is tested without a host.

use std::io::Read;
use std::path::Path;

use kante_syntax::SyntaxError;

/// What the host says about one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Present (loaded, or built in); `evidence` names where the kernel says so.
    Present { evidence: String },
    /// Module support exists and it is not loaded: run modprobe.
    Load,
    /// The kernel's configuration says it was not built.
    Absent { evidence: String },
    /// No module support and nothing says either way.
    Assumed,
}

/// The host files the decision reads.
pub trait HostView {
    fn read(&self, path: &str) -> Option<String>;
    fn exists(&self, path: &str) -> bool;
    /// Text of the kernel configuration (`/proc/config.gz`, decompressed).
    fn kernel_config(&self) -> Option<String>;
    fn release(&self) -> String;
}

/// The real host.
pub struct Host;

impl HostView for Host {
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn exists(&self, path: &str) -> bool {
        Path::new(path).exists()
    }

    fn kernel_config(&self) -> Option<String> {
        let f = std::fs::File::open("/proc/config.gz").ok()?;
        let mut s = String::new();
        flate2::read::GzDecoder::new(f)
            .read_to_string(&mut s)
            .ok()?;
        Some(s)
    }

    fn release(&self) -> String {
        nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Module names as the kernel spells them in /proc/modules and /sys/module.
pub fn normalize(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// Why `modprobe` did not load a module.
#[derive(Debug, thiserror::Error)]
pub enum ModprobeError {
    #[error("running modprobe {module}: {source}")]
    Spawn {
        module: String,
        #[source]
        source: std::io::Error,
    },
    #[error("modprobe {module} failed: {stderr}")]
    Failed { module: String, stderr: String },
}

/// Why a `linux.kernel_modules` value cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// The value is not a list of module names.
    #[error("{0}")]
    List(#[from] SyntaxError),
    /// A module that had to be loaded could not be.
    #[error("linux.kernel_modules: {0}")]
    Load(#[source] ModprobeError),
}

/// Splits and checks a `linux.kernel_modules` value.
pub fn parse_list(value: &str) -> Result<Vec<String>, SyntaxError> {
    let mut out = Vec::new();
    for m in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        if m.len() > 55
            || !m
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(SyntaxError(format!("{m:?} is not a kernel module name")));
        }
        out.push(m.to_string());
    }
    Ok(out)
}

/// Kernel configuration symbols of modules whose names do not say it.
const CONFIG_OF: &[(&str, &str)] = &[
    ("ip_tables", "IP_NF_IPTABLES"),
    ("ip6_tables", "IP6_NF_IPTABLES"),
    ("iptable_nat", "IP_NF_NAT"),
    ("iptable_mangle", "IP_NF_MANGLE"),
    ("iptable_filter", "IP_NF_FILTER"),
    ("iptable_raw", "IP_NF_RAW"),
    ("ip6table_nat", "IP6_NF_NAT"),
    ("ip6table_filter", "IP6_NF_FILTER"),
    ("ip6table_mangle", "IP6_NF_MANGLE"),
    ("bridge", "BRIDGE"),
    ("br_netfilter", "BRIDGE_NETFILTER"),
    ("nf_nat", "NF_NAT"),
    ("nf_conntrack", "NF_CONNTRACK"),
    ("nf_tables", "NF_TABLES"),
    ("xfrm_user", "XFRM_USER"),
    ("bonding", "BONDING"),
    ("overlay", "OVERLAY_FS"),
    ("netlink_diag", "NETLINK_DIAG"),
    ("veth", "VETH"),
    ("vxlan", "VXLAN"),
    ("macvlan", "MACVLAN"),
    ("ipvlan", "IPVLAN"),
    ("tun", "TUN"),
    ("dummy", "DUMMY"),
    ("8021q", "VLAN_8021Q"),
    ("fuse", "FUSE_FS"),
    ("wireguard", "WIREGUARD"),
    ("ip_vs", "IP_VS"),
];

/// Candidate `CONFIG_` symbols for a module.
fn config_symbols(name: &str) -> Vec<String> {
    if let Some((_, c)) = CONFIG_OF.iter().find(|(m, _)| *m == name) {
        return vec![(*c).to_string()];
    }
    if let Some(rest) = name.strip_prefix("ip_vs_") {
        return vec![format!("IP_VS_{}", rest.to_ascii_uppercase())];
    }
    if let Some(rest) = name.strip_prefix("xt_") {
        let r = rest.to_ascii_uppercase();
        return vec![
            format!("NETFILTER_XT_MATCH_{r}"),
            format!("NETFILTER_XT_TARGET_{r}"),
        ];
    }
    if let Some(rest) = name.strip_prefix("nft_") {
        return vec![format!("NFT_{}", rest.to_ascii_uppercase())];
    }
    vec![name.to_ascii_uppercase()]
}

/// The symbol a family of modules depends on.
fn required_symbol(name: &str) -> Option<&'static str> {
    if name.starts_with("ip_vs_") {
        Some("IP_VS")
    } else if name.starts_with("xt_") {
        Some("NETFILTER_XTABLES")
    } else if name.starts_with("iptable_") {
        Some("IP_NF_IPTABLES")
    } else if name.starts_with("ip6table_") {
        Some("IP6_NF_IPTABLES")
    } else {
        None
    }
}

/// Filesystems a module provides, as /proc/filesystems names them.
fn filesystem_of(name: &str) -> Option<&'static str> {
    match name {
        "overlay" => Some("overlay"),
        "fuse" => Some("fuse"),
        "btrfs" => Some("btrfs"),
        "squashfs" => Some("squashfs"),
        _ => None,
    }
}

/// Decides about one module.
pub fn check(name: &str, host: &dyn HostView) -> Finding {
    let name = normalize(name);
    let sys = format!("/sys/module/{name}");
    if let Some(mods) = host.read("/proc/modules") {
        if mods
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&name))
        {
            return Finding::Present {
                evidence: "/proc/modules".into(),
            };
        }
        if host.exists(&sys) {
            return Finding::Present { evidence: sys };
        }
        return Finding::Load;
    }
    // No loadable modules: only what is built in exists.
    if host.exists(&sys) {
        return Finding::Present { evidence: sys };
    }
    let builtin = format!("/lib/modules/{}/modules.builtin", host.release());
    if let Some(list) = host.read(&builtin) {
        let hit = list.lines().any(|l| {
            l.rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".ko"))
                .map(normalize)
                .as_deref()
                == Some(name.as_str())
        });
        if hit {
            return Finding::Present { evidence: builtin };
        }
    }
    if let Some(fs) = filesystem_of(&name) {
        let listed = host
            .read("/proc/filesystems")
            .is_some_and(|t| t.lines().any(|l| l.split_whitespace().last() == Some(fs)));
        if listed {
            return Finding::Present {
                evidence: "/proc/filesystems".into(),
            };
        }
    }
    if let Some(config) = host.kernel_config() {
        for sym in config_symbols(&name) {
            let set = format!("CONFIG_{sym}=y");
            if config.lines().any(|l| l.trim() == set) {
                return Finding::Present {
                    evidence: format!("/proc/config.gz: {set}"),
                };
            }
            let unset = format!("# CONFIG_{sym} is not set");
            if config.lines().any(|l| l.trim() == unset) {
                return Finding::Absent {
                    evidence: format!("/proc/config.gz: {}", &unset[2..]),
                };
            }
        }
        // A sub-module of something that is not built is not there either.
        if let Some(sym) = required_symbol(&name) {
            let unset = format!("# CONFIG_{sym} is not set");
            if config.lines().any(|l| l.trim() == unset) {
                return Finding::Absent {
                    evidence: format!("/proc/config.gz: {}", &unset[2..]),
                };
            }
        }
    }
    Finding::Assumed
}

/// How one module of a list was found or made available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub module: String,
    pub finding: Finding,
}

impl Outcome {
    /// A line for the daemon's log, and whether it deserves a warning.
    pub fn describe(&self) -> (String, bool) {
        let m = &self.module;
        match &self.finding {
            Finding::Present { evidence } => (format!("kernel module {m}: present ({evidence})"), false),
            Finding::Load => (format!("kernel module {m}: loaded with modprobe"), false),
            Finding::Absent { evidence } => (
                format!("kernel module {m}: this kernel was built without it ({evidence}) and cannot load modules; the instance starts without it"),
                true,
            ),
            Finding::Assumed => (
                format!("kernel module {m}: this kernel cannot load modules and nothing says whether {m} is built in; assuming it is"),
                true,
            ),
        }
    }
}

/// Checks every module of a `linux.kernel_modules` value, loading missing
/// ones with modprobe where the kernel can. Fails on the first module that
/// needed loading and could not be loaded.
pub fn ensure(
    value: &str,
    host: &dyn HostView,
    load: &dyn Fn(&str) -> Result<(), ModprobeError>,
) -> Result<Vec<Outcome>, KmodError> {
    let mut out = Vec::new();
    for module in parse_list(value)? {
        let finding = check(&module, host);
        if finding == Finding::Load {
            load(&module).map_err(KmodError::Load)?;
        }
        out.push(Outcome { module, finding });
    }
    Ok(out)
}

/// Runs `modprobe <name>`.
pub fn modprobe(name: &str) -> Result<(), ModprobeError> {
    let out = std::process::Command::new("modprobe")
        .arg("--")
        .arg(name)
        .output()
        .map_err(|source| ModprobeError::Spawn {
            module: name.into(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ModprobeError::Failed {
            module: name.into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Fake {
        files: HashMap<String, String>,
        config: Option<String>,
    }

    impl HostView for Fake {
        fn read(&self, path: &str) -> Option<String> {
            self.files.get(path).cloned()
        }
        fn exists(&self, path: &str) -> bool {
            self.files.contains_key(path)
        }
        fn kernel_config(&self) -> Option<String> {
            self.config.clone()
        }
        fn release(&self) -> String {
            "6.1.0-test".into()
        }
    }

    fn fake(files: &[(&str, &str)], config: Option<&str>) -> Fake {
        Fake {
            files: files
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            config: config.map(str::to_string),
        }
    }

    #[test]
    fn ensure_loads_what_is_missing_and_fails_clearly() {
        let h = fake(&[("/proc/modules", "overlay 1 0 - Live 0x0\n")], None);
        let loaded = std::cell::RefCell::new(Vec::new());
        let ok = |m: &str| {
            loaded.borrow_mut().push(m.to_string());
            Ok(())
        };
        let out = ensure("overlay,ip_vs", &h, &ok).unwrap();
        assert_eq!(*loaded.borrow(), vec!["ip_vs"]);
        assert_eq!(out[1].finding, Finding::Load);
        let fail = |m: &str| {
            Err(ModprobeError::Failed {
                module: m.into(),
                stderr: "not found".into(),
            })
        };
        let e = ensure("overlay,ip_vs", &h, &fail).unwrap_err().to_string();
        assert!(
            e.contains("linux.kernel_modules") && e.contains("ip_vs"),
            "{e}"
        );
        let none = fake(&[], None);
        let out = ensure("bonding", &none, &fail).unwrap();
        assert!(out[0].describe().1, "an assumption is a warning");
    }

    #[test]
    fn lists_are_checked() {
        assert_eq!(
            parse_list("ip_tables, br_netfilter,,xt_MASQUERADE").unwrap(),
            vec!["ip_tables", "br_netfilter", "xt_MASQUERADE"]
        );
        assert!(parse_list("ip_tables;rm -rf").is_err());
        assert!(parse_list("../../x").is_err());
        assert!(parse_list("").unwrap().is_empty());
    }

    #[test]
    fn with_module_support() {
        let h = fake(
            &[
                (
                    "/proc/modules",
                    "overlay 151552 0 - Live 0x0\nbr_netfilter 32768 0 - Live 0x0\n",
                ),
                ("/sys/module/bridge", ""),
            ],
            None,
        );
        assert!(matches!(check("overlay", &h), Finding::Present { .. }));
        assert!(matches!(check("br-netfilter", &h), Finding::Present { .. }));
        assert!(matches!(check("bridge", &h), Finding::Present { .. }));
        assert_eq!(check("ip_vs", &h), Finding::Load);
    }

    #[test]
    fn without_module_support() {
        let config =
            "CONFIG_IP_NF_IPTABLES=y\n# CONFIG_IP_VS is not set\n# CONFIG_MODULES is not set\n\
                      CONFIG_NETFILTER_XT_TARGET_MASQUERADE=y\n";
        let h = fake(
            &[
                ("/sys/module/bridge", ""),
                ("/proc/filesystems", "nodev\tsysfs\nnodev\toverlay\n"),
                (
                    "/lib/modules/6.1.0-test/modules.builtin",
                    "kernel/net/netlink/netlink_diag.ko\n",
                ),
            ],
            Some(config),
        );
        let present = |m: &str| matches!(check(m, &h), Finding::Present { .. });
        assert!(present("bridge"));
        assert!(present("overlay"));
        assert!(present("netlink_diag"));
        assert!(present("ip_tables"));
        assert!(present("xt_MASQUERADE"));
        assert_eq!(
            check("ip_vs", &h),
            Finding::Absent {
                evidence: "/proc/config.gz: CONFIG_IP_VS is not set".into()
            }
        );
        assert_eq!(
            check("ip_vs_rr", &h),
            Finding::Absent {
                evidence: "/proc/config.gz: CONFIG_IP_VS is not set".into()
            }
        );
        assert_eq!(check("xfrm_user", &h), Finding::Assumed);
        let bare = fake(&[], None);
        assert_eq!(check("bonding", &bare), Finding::Assumed);
    }
}
