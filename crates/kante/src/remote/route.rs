//! `REMOTE:NAME` in the arguments: each argument that names an instance,
//! image, profile, network, pool or volume (or a bare `REMOTE:` where a
//! verb lists) is split here, before any command runs; the command then
//! sees plain names and one client, that of the remote they named (the
//! default remote when none did). One command works on one remote, but
//! for copies and moves between servers, which [`cross`] splits off first
//! (`cmd/migrate.rs` drives both servers).

use anyhow::{bail, Result};

use super::Config;
use crate::cli::cluster::{ClusterCmd, GroupCmd, ServiceCmd};
use crate::cli::{
    AliasCmd, Command, ConfigCmd, DeviceCmd, FileCmd, ImageCmd, NetworkCmd, OperationCmd,
    ProfileCmd, StorageCmd, TrustCmd, VolumeCmd,
};

/// `REMOTE:NAME` to `(Some(REMOTE), NAME)`; text with no remote part (no
/// `:`, or a `/` or `=` before the first `:`, as in `c1/a:b` or
/// `key=a:b`) is `(None, text)`. A remote that is not configured is an
/// error, as in lxc.
pub fn split<'a>(cfg: &Config, s: &'a str) -> Result<(Option<&'a str>, &'a str)> {
    match s.split_once(':') {
        Some((remote, rest)) if !remote.is_empty() && !remote.contains(['/', '=', '[']) => {
            if !cfg.has(remote) {
                bail!("The remote \"{remote}\" doesn't exist");
            }
            Ok((Some(remote), rest))
        }
        _ => Ok((None, s)),
    }
}

/// Collects the remote the arguments name, stripping it from each.
pub struct Router<'a> {
    cfg: &'a Config,
    chosen: Option<(String, String)>,
}

impl<'a> Router<'a> {
    pub fn new(cfg: &'a Config) -> Router<'a> {
        Router { cfg, chosen: None }
    }

    /// The remote the command goes to.
    pub fn remote(&self) -> String {
        match &self.chosen {
            Some((r, _)) => r.clone(),
            None => self.cfg.default_remote.clone(),
        }
    }

    /// One argument: `REMOTE:` is stripped (a bare `REMOTE:` leaves "").
    pub fn arg(&mut self, s: &mut String) -> Result<()> {
        let (remote, rest) = split(self.cfg, s)?;
        let Some(remote) = remote else {
            return Ok(());
        };
        match &self.chosen {
            Some((r, first)) if r != remote => bail!(
                "{first:?} and {s:?} are on different remotes ({r}, {remote}); one command works on one remote"
            ),
            Some(_) => {}
            None => self.chosen = Some((remote.to_string(), s.clone())),
        }
        *s = rest.to_string();
        Ok(())
    }

    pub fn opt(&mut self, s: &mut Option<String>) -> Result<()> {
        if let Some(v) = s.as_mut() {
            self.arg(v)?;
        }
        if s.as_deref() == Some("") {
            *s = None;
        }
        Ok(())
    }

    pub fn all(&mut self, v: &mut [String]) -> Result<()> {
        v.iter_mut().try_for_each(|s| self.arg(s))
    }

    /// A leading bare `REMOTE:` of a list of arguments (`list r: FILTER`)
    /// is taken off; other arguments are left alone.
    pub fn leading(&mut self, v: &mut Vec<String>) -> Result<()> {
        if let Some(first) = v.first_mut() {
            self.arg(first)?;
            if first.is_empty() {
                v.remove(0);
            }
        }
        Ok(())
    }
}

/// A copy or move whose source and destination are on different servers.
#[derive(Debug, PartialEq, Eq)]
pub struct Cross {
    pub from: String,
    pub to: String,
    /// The source's name on `from` (`INSTANCE` or `INSTANCE/SNAPSHOT`).
    pub source: String,
    /// The name on `to`; `None` keeps the source's (`host2:`).
    pub destination: Option<String>,
}

/// The remote and the name of one side of a copy or move (the default
/// remote when none is given, as lxc does).
fn side(cfg: &Config, s: &str) -> Result<(String, String)> {
    let (remote, rest) = split(cfg, s).map_err(|e| {
        anyhow::anyhow!("{e} (see `kante remote list`): REMOTE: must name a configured remote")
    })?;
    let remote = remote.unwrap_or(&cfg.default_remote).to_string();
    Ok((remote, rest.to_string()))
}

/// `Some` when `cmd` copies or moves an instance to another server.
pub fn cross(cfg: &Config, cmd: &Command) -> Result<Option<Cross>> {
    let (src, dst) = match cmd {
        Command::Copy(a) => (&a.source, a.destination.as_ref()),
        Command::Move(a) => (&a.source, Some(&a.destination)),
        _ => return Ok(None),
    };
    let (from, source) = side(cfg, src)?;
    let Some(dst) = dst else {
        return Ok(None);
    };
    let (to, destination) = side(cfg, dst)?;
    if from == to {
        return Ok(None);
    }
    Ok(Some(Cross {
        from,
        to,
        source,
        destination: Some(destination).filter(|d| !d.is_empty()),
    }))
}

/// A custom volume copied or moved between two servers
/// (`storage volume copy|move a:POOL/VOL b:POOL/VOL`).
#[derive(Debug, PartialEq, Eq)]
pub struct VolumeCross {
    pub from: String,
    pub to: String,
    /// `POOL/VOLUME` on `from`.
    pub source: String,
    /// `POOL/VOLUME` on `to`.
    pub destination: String,
}

/// `Some` when `cmd` copies or moves a custom volume to another server.
pub fn volume_cross(cfg: &Config, cmd: &Command) -> Result<Option<VolumeCross>> {
    let Command::Storage(StorageCmd::Volume { cmd, .. }) = cmd else {
        return Ok(None);
    };
    let (src, dst) = match cmd {
        VolumeCmd::Copy { args, .. } if args.len() == 2 => (&args[0], &args[1]),
        VolumeCmd::Move {
            source,
            destination,
            ..
        } => (source, destination),
        _ => return Ok(None),
    };
    let (from, source) = side(cfg, src)?;
    let (to, destination) = side(cfg, dst)?;
    if from == to {
        return Ok(None);
    }
    Ok(Some(VolumeCross {
        from,
        to,
        source,
        destination,
    }))
}

/// Source and destination of a copy or move on one server (a move or
/// copy between servers went to [`cross`] before routing).
fn pair(cfg: &Config, src: &mut String, dst: Option<&mut String>) -> Result<String> {
    let (from, name) = side(cfg, src)?;
    *src = name;
    if let Some(dst) = dst {
        let (to, name) = side(cfg, dst)?;
        if to != from {
            bail!("{from} and {to} are different servers: the copy between them was not routed");
        }
        *dst = name;
    }
    Ok(from)
}

/// Splits every remote-bearing argument of `cmd` in place and returns the
/// remote the command goes to.
pub fn route(cfg: &Config, cmd: &mut Command) -> Result<String> {
    let mut r = Router::new(cfg);
    match cmd {
        Command::Launch(a) => launch(&mut r, &mut a.create)?,
        Command::Init(a) => launch(&mut r, &mut a.create)?,
        Command::Start { names, .. }
        | Command::Stop { names, .. }
        | Command::Restart { names, .. }
        | Command::Pause { names }
        | Command::Delete { names, .. } => r.all(names)?,
        Command::Rename { name, new_name } => {
            // The new name stays on the instance's remote.
            r.arg(name)?;
            r.arg(new_name)?;
        }
        Command::Move(a) => return pair(cfg, &mut a.source, Some(&mut a.destination)),
        Command::Copy(a) => return pair(cfg, &mut a.source, a.destination.as_mut()),
        Command::Snapshot { instance, .. } | Command::Restore { instance, .. } => {
            r.arg(instance)?
        }
        Command::Export(a) => r.arg(&mut a.instance)?,
        Command::Import(a) => r.opt(&mut a.name)?,
        Command::Publish(a) => {
            r.arg(&mut a.instance)?;
            // `publish c1 r:`: a bare remote; anything else is a property.
            if let Some(text) = a.remote.clone() {
                if let (Some(_), "") = split(cfg, &text)? {
                    r.opt(&mut a.remote)?;
                } else {
                    a.properties.insert(0, text);
                    a.remote = None;
                }
            }
        }
        Command::List(a) => {
            if a.filters.first().is_some_and(|f| !f.contains('=')) {
                r.leading(&mut a.filters)?;
            }
        }
        Command::Info { name, .. } => r.opt(name)?,
        Command::Console { name, .. } => r.arg(name)?,
        Command::Exec(a) => r.arg(&mut a.name)?,
        Command::File(f) => match f {
            FileCmd::Push { paths, .. } => {
                if let Some(target) = paths.last_mut() {
                    r.arg(target)?;
                }
            }
            FileCmd::Pull { paths, .. } => {
                let n = paths.len().saturating_sub(1);
                r.all(&mut paths[..n])?;
            }
            FileCmd::Delete { paths } => r.all(paths)?,
        },
        Command::Image(i) => image(&mut r, i)?,
        Command::Config(c) => config(&mut r, c)?,
        Command::Network(n) => network(&mut r, n)?,
        Command::Storage(s) => storage(&mut r, s)?,
        Command::Profile(p) => profile(&mut r, p)?,
        Command::Version { remote } | Command::Monitor { remote, .. } => r.opt(remote)?,
        Command::Operation(o) => match o {
            OperationCmd::List { remote, .. } => r.opt(remote)?,
            OperationCmd::Show { id } | OperationCmd::Delete { id } => r.arg(id)?,
        },
        Command::Cluster(cl) => match cl {
            ClusterCmd::Enable { args } | ClusterCmd::Join { args } => r.leading(args)?,
            ClusterCmd::List { remote, .. } => r.opt(remote)?,
            ClusterCmd::Add { name, .. } => r.opt(name)?,
            ClusterCmd::Show { name }
            | ClusterCmd::Remove { name, .. }
            | ClusterCmd::Evacuate { name, .. }
            | ClusterCmd::Restore { name, .. } => r.arg(name)?,
            ClusterCmd::Group(g) => match g {
                GroupCmd::List { remote, .. } => r.opt(remote)?,
                GroupCmd::Create { name, .. }
                | GroupCmd::Show { name }
                | GroupCmd::Rename { name, .. }
                | GroupCmd::Delete { name } => r.arg(name)?,
                GroupCmd::Assign { member, .. } | GroupCmd::Remove { member, .. } => {
                    r.arg(member)?
                }
            },
        },
        Command::Service(ServiceCmd::List { remote, .. }) => r.opt(remote)?,
        Command::Remote(_)
        | Command::Lab(_)
        | Command::Apply(_)
        | Command::Site(_)
        | Command::Completion { .. }
        | Command::Manpage { .. }
        | Command::Top(_)
        | Command::WaitReady { .. } => {}
    }
    Ok(r.remote())
}

/// The image is on the instance's remote, or on another one (an image
/// server), which the instance's server then downloads it from.
fn launch(r: &mut Router, a: &mut crate::cli::CreateArgs) -> Result<()> {
    // `init --empty [REMOTE:]NAME`: the one argument is the name.
    if a.empty && a.name.is_none() && !a.image.is_empty() {
        a.name = Some(std::mem::take(&mut a.image));
    }
    r.opt(&mut a.name)?;
    let (remote, rest) = split(r.cfg, &a.image)?;
    if let Some(remote) = remote {
        if remote != r.remote() {
            a.image_remote = Some(remote.to_string());
        }
        a.image = rest.to_string();
    }
    Ok(())
}

fn image(r: &mut Router, i: &mut ImageCmd) -> Result<()> {
    match i {
        ImageCmd::List { filters, .. } => r.leading(filters),
        ImageCmd::Delete { images } | ImageCmd::Refresh { images } => r.all(images),
        // The command goes to the destination, which pulls from the
        // source; the source's remote is read by the command itself.
        ImageCmd::Copy { destination, .. } => r.opt(destination),
        ImageCmd::Info { image } | ImageCmd::Show { image } => r.arg(image),
        ImageCmd::Alias(AliasCmd::Create { alias, .. }) => r.arg(alias),
        ImageCmd::Alias(AliasCmd::Delete { alias }) => r.arg(alias),
        ImageCmd::Alias(AliasCmd::List { remote, .. }) => r.opt(remote),
        // `image import TARBALL [ROOTFS] [REMOTE:]`, as lxc: a last
        // argument that is a bare remote names where to import.
        ImageCmd::Import { rootfs, .. } => {
            let Some(text) = rootfs.as_ref().and_then(|p| p.to_str()) else {
                return Ok(());
            };
            if let (Some(_), "") = split(r.cfg, text)? {
                let mut bare = text.to_string();
                r.arg(&mut bare)?;
                *rootfs = None;
            }
            Ok(())
        }
        ImageCmd::Build { .. } => Ok(()),
    }
}

fn config(r: &mut Router, c: &mut ConfigCmd) -> Result<()> {
    match c {
        ConfigCmd::Set { args } => {
            // The first argument is `[REMOTE:]INSTANCE`, a bare `REMOTE:`,
            // or already a key.
            if let Some(first) = args.first_mut() {
                r.arg(first)?;
            }
            Ok(())
        }
        ConfigCmd::Get { name, .. } | ConfigCmd::Unset { name, .. } | ConfigCmd::Edit { name } => {
            r.arg(name)
        }
        ConfigCmd::Show { name, .. } => {
            if let Some(n) = name.as_mut() {
                r.arg(n)?;
            }
            Ok(())
        }
        ConfigCmd::Device(d) => device(r, d),
        ConfigCmd::Trust(t) => match t {
            TrustCmd::Add { args, .. }
            | TrustCmd::AddCertificate { args, .. }
            | TrustCmd::Remove { args } => {
                if args.len() == 2 {
                    r.arg(&mut args[0])?;
                }
                Ok(())
            }
            TrustCmd::List { remote, .. } => r.opt(remote),
        },
    }
}

fn device(r: &mut Router, d: &mut DeviceCmd) -> Result<()> {
    match d {
        DeviceCmd::Add { name, .. }
        | DeviceCmd::Remove { name, .. }
        | DeviceCmd::Show { name }
        | DeviceCmd::List { name } => r.arg(name),
    }
}

fn network(r: &mut Router, n: &mut NetworkCmd) -> Result<()> {
    match n {
        NetworkCmd::Create { name, .. }
        | NetworkCmd::Show { name, .. }
        | NetworkCmd::Info { name }
        | NetworkCmd::Leases { name, .. }
        | NetworkCmd::Delete { name }
        | NetworkCmd::Get { name, .. }
        | NetworkCmd::Set { name, .. }
        | NetworkCmd::Unset { name, .. }
        | NetworkCmd::Edit { name } => r.arg(name),
        NetworkCmd::Rename { name, new_name } => {
            r.arg(name)?;
            r.arg(new_name)
        }
        NetworkCmd::Attach {
            network, instance, ..
        }
        | NetworkCmd::Detach {
            network, instance, ..
        } => {
            r.arg(network)?;
            r.arg(instance)
        }
        NetworkCmd::List { remote, .. } => r.opt(remote),
    }
}

fn storage(r: &mut Router, s: &mut StorageCmd) -> Result<()> {
    match s {
        StorageCmd::Create { pool, .. }
        | StorageCmd::Show { pool, .. }
        | StorageCmd::Info { pool, .. }
        | StorageCmd::Delete { pool }
        | StorageCmd::Get { pool, .. }
        | StorageCmd::Set { pool, .. }
        | StorageCmd::Unset { pool, .. }
        | StorageCmd::Edit { pool } => r.arg(pool),
        StorageCmd::List { remote, .. } => r.opt(remote),
        StorageCmd::Volume { cmd: v, .. } => match v {
            VolumeCmd::Attach { pool, instance, .. } | VolumeCmd::Detach { pool, instance, .. } => {
                r.arg(pool)?;
                r.arg(instance)
            }
            // One remote here: copies and moves between remotes went to
            // `volume_cross` before routing.
            VolumeCmd::Copy { args, .. } => r.all(args),
            VolumeCmd::Move {
                source,
                destination,
                ..
            } => {
                r.arg(source)?;
                r.arg(destination)
            }
            VolumeCmd::Create { pool, .. }
            | VolumeCmd::List { pool, .. }
            | VolumeCmd::Show { pool, .. }
            | VolumeCmd::Info { pool, .. }
            | VolumeCmd::Get { pool, .. }
            | VolumeCmd::Set { pool, .. }
            | VolumeCmd::Unset { pool, .. }
            | VolumeCmd::Edit { pool, .. }
            | VolumeCmd::Rename { pool, .. }
            | VolumeCmd::Delete { pool, .. }
            | VolumeCmd::Snapshot { pool, .. }
            | VolumeCmd::Restore { pool, .. } => r.arg(pool),
        },
    }
}

fn profile(r: &mut Router, p: &mut ProfileCmd) -> Result<()> {
    match p {
        ProfileCmd::Show { name }
        | ProfileCmd::Create { name, .. }
        | ProfileCmd::Get { name, .. }
        | ProfileCmd::Set { name, .. }
        | ProfileCmd::Unset { name, .. }
        | ProfileCmd::Edit { name } => r.arg(name),
        ProfileCmd::Delete { names } => r.all(names),
        ProfileCmd::Copy {
            source,
            destination,
        } => {
            r.arg(source)?;
            r.arg(destination)
        }
        ProfileCmd::Rename { name, new_name } => {
            r.arg(name)?;
            r.arg(new_name)
        }
        ProfileCmd::Device(d) => device(r, d),
        ProfileCmd::Add { instance, .. }
        | ProfileCmd::Remove { instance, .. }
        | ProfileCmd::Assign { instance, .. } => r.arg(instance),
        ProfileCmd::List { remote, .. } => r.opt(remote),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;
    use crate::remote::Remote;

    fn cfg() -> Config {
        let mut c = Config::load_from(std::path::Path::new("/nonexistent/kante-test")).unwrap();
        for name in ["r", "images"] {
            c.remotes.insert(
                name.into(),
                Remote {
                    addr: "https://h:8443".into(),
                    protocol: "kante".into(),
                    public: false,
                },
            );
        }
        c
    }

    #[test]
    fn remote_names_split() {
        let c = cfg();
        assert_eq!(split(&c, "c1").unwrap(), (None, "c1"));
        assert_eq!(split(&c, "r:c1").unwrap(), (Some("r"), "c1"));
        assert_eq!(split(&c, "local:c1").unwrap(), (Some("local"), "c1"));
        assert_eq!(split(&c, "r:").unwrap(), (Some("r"), ""));
        assert_eq!(split(&c, "r:c1/snap0").unwrap(), (Some("r"), "c1/snap0"));
        assert_eq!(split(&c, "c1/snap0").unwrap(), (None, "c1/snap0"));
        assert_eq!(
            split(&c, "images:debian/12").unwrap(),
            (Some("images"), "debian/12")
        );
        assert_eq!(split(&c, "debian/12").unwrap(), (None, "debian/12"));
        // Paths and values with colons are not remotes.
        assert_eq!(split(&c, "c1/etc/a:b").unwrap(), (None, "c1/etc/a:b"));
        assert_eq!(split(&c, "k=[::]:8443").unwrap(), (None, "k=[::]:8443"));
        assert_eq!(
            split(&c, "nosuch:c1").unwrap_err().to_string(),
            "The remote \"nosuch\" doesn't exist"
        );
    }

    fn routed(args: &[&str]) -> Result<(String, Command)> {
        let mut cli =
            Cli::try_parse_from(std::iter::once("kante").chain(args.iter().copied())).unwrap();
        let remote = route(&cfg(), &mut cli.command)?;
        Ok((remote, cli.command))
    }

    #[test]
    fn commands_go_to_the_remote_their_arguments_name() {
        let (remote, cmd) = routed(&["exec", "r:c1", "--", "true"]).unwrap();
        assert_eq!(remote, "r");
        let Command::Exec(e) = cmd else { panic!() };
        assert_eq!(e.name, "c1");
        let (remote, cmd) = routed(&["list", "r:"]).unwrap();
        assert_eq!(remote, "r");
        let Command::List(l) = cmd else { panic!() };
        assert!(l.filters.is_empty());
        assert_eq!(routed(&["list", "status=running"]).unwrap().0, "local");
        assert_eq!(routed(&["list"]).unwrap().0, "local");
        let (remote, cmd) = routed(&["delete", "local:c1", "c2/s0"]).unwrap();
        assert_eq!(remote, "local");
        let Command::Delete { names, .. } = cmd else {
            panic!()
        };
        assert_eq!(names, vec!["c1", "c2/s0"]);
        let (remote, cmd) = routed(&["launch", "r:bookworm", "r:c1"]).unwrap();
        assert_eq!(remote, "r");
        let Command::Launch(l) = cmd else { panic!() };
        assert_eq!(
            (l.create.image.as_str(), l.create.name.as_deref()),
            ("bookworm", Some("c1"))
        );
        // An image copy goes to the destination; the source keeps its remote.
        let (remote, cmd) = routed(&["image", "copy", "r:bb", "local:", "--alias", "a"]).unwrap();
        assert_eq!(remote, "local");
        let Command::Image(ImageCmd::Copy {
            source,
            destination,
            ..
        }) = cmd
        else {
            panic!()
        };
        assert_eq!((source.as_str(), destination), ("r:bb", None));
        let (_, cmd) = routed(&["config", "set", "r:", "core.trust_password", "x"]).unwrap();
        let Command::Config(ConfigCmd::Set { args }) = cmd else {
            panic!()
        };
        assert_eq!(args, vec!["", "core.trust_password", "x"]);
        assert_eq!(
            routed(&["file", "push", "/tmp/a:b", "r:c1/root/"])
                .unwrap()
                .0,
            "r"
        );
        assert_eq!(
            routed(&["storage", "volume", "list", "r:default"])
                .unwrap()
                .0,
            "r"
        );
        for list in [
            &["network", "list", "r:"][..],
            &["storage", "ls", "r:"],
            &["profile", "list", "r:"],
            &["image", "alias", "list", "r:"],
            &["operation", "list", "r:"],
            &["version", "r:"],
            &["monitor", "r:"],
            &["image", "import", "/tmp/x.tar.gz", "r:"],
        ] {
            assert_eq!(routed(list).unwrap().0, "r", "{list:?}");
        }
    }

    fn crossing(args: &[&str]) -> Option<Cross> {
        let cli =
            Cli::try_parse_from(std::iter::once("kante").chain(args.iter().copied())).unwrap();
        cross(&cfg(), &cli.command).unwrap()
    }

    #[test]
    fn copies_and_moves_between_servers_are_split_off() {
        assert_eq!(
            crossing(&["copy", "r:c1", "c2"]),
            Some(Cross {
                from: "r".into(),
                to: "local".into(),
                source: "c1".into(),
                destination: Some("c2".into()),
            })
        );
        // `host2:` alone keeps the name.
        assert_eq!(
            crossing(&["move", "c1", "r:"]),
            Some(Cross {
                from: "local".into(),
                to: "r".into(),
                source: "c1".into(),
                destination: None,
            })
        );
        assert_eq!(crossing(&["copy", "r:c1", "r:c2"]), None);
        assert_eq!(crossing(&["move", "c1", "c2"]), None);
        assert_eq!(crossing(&["copy", "c1"]), None);
        assert_eq!(routed(&["copy", "r:c1", "r:c2"]).unwrap().0, "r");
        assert_eq!(routed(&["rename", "r:c1", "c2"]).unwrap().0, "r");
        let cli = Cli::try_parse_from(["kante", "move", "c4", "elsewhere:c4"]).unwrap();
        let e = cross(&cfg(), &cli.command).unwrap_err().to_string();
        assert!(e.contains("\"elsewhere\" doesn't exist"), "{e}");
    }

    #[test]
    fn commands_across_remotes_are_refused_in_one_line() {
        let e = routed(&["delete", "r:c1", "local:c2"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("different remotes"), "{e}");
        // A launch from an image server: the instance's server downloads.
        let (remote, cmd) = routed(&["launch", "images:debian/12", "c1"]).unwrap();
        assert_eq!(remote, "local");
        let Command::Launch(l) = cmd else { panic!() };
        assert_eq!(l.create.image, "debian/12");
        assert_eq!(l.create.image_remote.as_deref(), Some("images"));
    }
}
