//! Command-line grammar (lxc 5.0's verbs and flags where lxc has them).

mod apply;
pub mod cluster;
mod instance;
pub mod lab;
mod publish;
mod remote;
mod resources;
mod top;
mod transfer;
mod volume;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use apply::{ApplyArgs, SiteCmd};
pub use instance::{CopyArgs, CreateArgs, ExportArgs, ImportArgs, InitArgs, LaunchArgs, ListArgs};
pub use publish::PublishArgs;
pub use remote::{RemoteCmd, Restriction, TrustCmd};
pub use resources::{NetworkCmd, ProfileCmd, StorageCmd};
pub use top::{SortKey, TopArgs};
pub use transfer::{MoveArgs, TransferMode};
pub use volume::VolumeCmd;

use crate::table::Format;

#[derive(Parser, Debug)]
#[command(
    name = "kante",
    version,
    about = "Manage Kante system containers",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create and start an instance from an image
    Launch(LaunchArgs),
    /// Create an instance from an image without starting it
    Init(InitArgs),
    /// Start (or unfreeze) instances
    Start {
        #[arg(required_unless_present = "all", add = crate::complete::instances())]
        names: Vec<String>,
        /// Every instance (that is not already in the wanted state)
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Ignore the instance's saved state (Kante never saves one: a
        /// start is always stateless)
        #[arg(long)]
        stateless: bool,
        /// Immediately attach to the console (one instance; for stop, to watch the shutdown)
        #[arg(long, value_name = "TYPE", num_args = 0..=1, require_equals = true, default_missing_value = "console")]
        console: Option<String>,
    },
    /// Stop instances
    Stop {
        #[arg(required_unless_present = "all", add = crate::complete::instances())]
        names: Vec<String>,
        /// Every instance (that is not already in the wanted state)
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Force the instance to stop
        #[arg(short, long)]
        force: bool,
        /// Time to wait for a clean shutdown before failing (-1: forever)
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        timeout: i64,
        /// Store the instance's running state (needs CRIU; refused by the server)
        #[arg(long)]
        stateful: bool,
        /// Immediately attach to the console (one instance; for stop, to watch the shutdown)
        #[arg(long, value_name = "TYPE", num_args = 0..=1, require_equals = true, default_missing_value = "console")]
        console: Option<String>,
    },
    /// Restart instances
    Restart {
        #[arg(required_unless_present = "all", add = crate::complete::instances())]
        names: Vec<String>,
        /// Every instance (that is not already in the wanted state)
        #[arg(long, conflicts_with = "names")]
        all: bool,
        #[arg(short, long)]
        force: bool,
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        timeout: i64,
        /// Immediately attach to the console (one instance; for stop, to watch the shutdown)
        #[arg(long, value_name = "TYPE", num_args = 0..=1, require_equals = true, default_missing_value = "console")]
        console: Option<String>,
    },
    /// Freeze instances
    #[command(visible_alias = "freeze")]
    Pause {
        #[arg(required = true, add = crate::complete::instances())]
        names: Vec<String>,
    },
    /// Delete instances and snapshots (INSTANCE/SNAPSHOT)
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(required = true, add = crate::complete::instances())]
        names: Vec<String>,
        /// Stop running instances first
        #[arg(short, long)]
        force: bool,
        /// Ask before each deletion
        #[arg(short, long)]
        interactive: bool,
    },
    /// Rename an instance, or a snapshot: INSTANCE/SNAP INSTANCE/NEW
    Rename {
        #[arg(add = crate::complete::instances())]
        name: String,
        new_name: String,
    },
    /// Move an instance: rename it, or move it to another server (REMOTE:[NAME])
    #[command(visible_alias = "mv")]
    Move(MoveArgs),
    /// Copy an instance or snapshot: SOURCE[/SNAPSHOT] [DESTINATION]
    #[command(visible_alias = "cp")]
    Copy(CopyArgs),
    /// Snapshot an instance: INSTANCE [SNAPSHOT]
    Snapshot {
        #[arg(add = crate::complete::instances())]
        instance: String,
        snapshot: Option<String>,
        /// Replace the snapshot if one with this name exists
        #[arg(long)]
        reuse: bool,
        /// Keep the snapshot for ever (ignore snapshots.expiry)
        #[arg(long)]
        no_expiry: bool,
        /// Include the running state (needs CRIU; refused by the server)
        #[arg(long)]
        stateful: bool,
    },
    /// Restore an instance from a snapshot: INSTANCE SNAPSHOT
    Restore {
        #[arg(add = crate::complete::instances())]
        instance: String,
        snapshot: String,
        #[arg(long)]
        stateful: bool,
    },
    /// Export an instance (and its snapshots) as a backup tarball: INSTANCE [FILE]
    Export(ExportArgs),
    /// Import a backup tarball as an instance: FILE [NAME]
    Import(ImportArgs),
    /// Make an image from an instance or snapshot: INSTANCE[/SNAPSHOT] [REMOTE:]
    Publish(PublishArgs),
    /// List instances
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show an instance's state and resources, or the server's: [REMOTE:][INSTANCE]
    Info {
        #[arg(add = crate::complete::instances())]
        name: Option<String>,
        /// Also show the instance's log
        #[arg(long)]
        show_log: bool,
        /// Show the resources available to the server (no instance name)
        #[arg(long, conflicts_with_all = ["name", "show_log"])]
        resources: bool,
    },
    /// Run a command in an instance
    Exec(ExecArgs),
    /// Move files in and out of instances
    #[command(subcommand)]
    File(FileCmd),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage instance configuration and devices
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage storage pools
    #[command(subcommand)]
    Storage(StorageCmd),
    /// Manage profiles
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Manage the remote servers this client talks to
    #[command(subcommand)]
    Remote(RemoteCmd),
    /// Manage the cluster this server is a member of
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// The cluster's services (instances' `service.NAME=PORT[/PROTO]` keys)
    #[command(subcommand)]
    Service(cluster::ServiceCmd),
    /// A lab of hosts on this machine (network namespaces, each with a kanted)
    #[command(subcommand)]
    Lab(lab::LabCmd),
    /// Converge the hosts of a site file: plan, show the diff, apply
    Apply(ApplyArgs),
    /// Sites: export hosts as a site file
    #[command(subcommand)]
    Site(SiteCmd),
    /// Attach to an instance's console (Ctrl+a q detaches), or show its log
    Console {
        #[arg(add = crate::complete::instances())]
        name: String,
        /// Print the console log instead of attaching
        #[arg(long)]
        show_log: bool,
        /// Type of connection: `console` (the serial console); `vga` is refused (no VMs)
        #[arg(short = 't', long = "type", default_value = "console")]
        kind: String,
    },
    /// Show client and server versions: [REMOTE:]
    Version { remote: Option<String> },
    /// Print a shell's completion script (bash, zsh, fish): `source <(kante completion bash)`
    Completion {
        /// bash, zsh, fish, elvish or powershell
        shell: String,
        /// The command the script calls back for candidates (default: this program's path)
        #[arg(long)]
        completer: Option<String>,
    },
    /// Write man pages for kante and every subcommand into DIR
    #[command(hide = true)]
    Manpage { dir: PathBuf },
    /// Wait until the daemon answers its API (as `lxd waitready` does)
    WaitReady {
        /// Give up after this many seconds (0: wait for ever)
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
    /// List, show or cancel background operations
    #[command(subcommand)]
    Operation(OperationCmd),
    /// A live view of instances (CPU, memory, disk and network rates): [REMOTE:]...
    Top(TopArgs),
    /// Print server events as they happen
    Monitor {
        /// A remote to watch (`REMOTE:`)
        remote: Option<String>,
        /// Event types to show (operation, lifecycle, logging)
        #[arg(long = "type")]
        types: Vec<String>,
        #[arg(long, value_enum, default_value = "yaml")]
        format: Format,
    },
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[arg(add = crate::complete::instances())]
    pub name: String,
    /// Environment variable to set (KEY=VALUE)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Directory to run the command in
    #[arg(long)]
    pub cwd: Option<String>,
    /// User ID to run the command as
    #[arg(long)]
    pub user: Option<u32>,
    /// Group ID to run the command as
    #[arg(long)]
    pub group: Option<u32>,
    /// Disable pseudo-terminal allocation
    #[arg(
        short = 'T',
        long = "force-noninteractive",
        conflicts_with = "force_interactive"
    )]
    pub force_noninteractive: bool,
    /// Force pseudo-terminal allocation
    #[arg(short = 't', long = "force-interactive")]
    pub force_interactive: bool,
    /// Terminal mode, as lxc: auto, interactive or non-interactive
    #[arg(long, default_value = "auto", value_parser = ["auto", "interactive", "non-interactive"])]
    pub mode: String,
    /// Do not read stdin (reads from /dev/null)
    #[arg(short = 'n', long = "disable-stdin")]
    pub disable_stdin: bool,
    /// The command and its arguments (after `--`)
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum FileCmd {
    /// Push files into an instance: SOURCE... INSTANCE/PATH
    Push {
        #[arg(required = true, num_args = 2..)]
        paths: Vec<String>,
        #[arg(long)]
        uid: Option<i64>,
        #[arg(long)]
        gid: Option<i64>,
        /// Octal permissions (e.g. 0644)
        #[arg(long)]
        mode: Option<String>,
        /// Create any directories that are missing
        #[arg(short = 'p', long = "create-dirs")]
        create_dirs: bool,
        /// Push directories recursively
        #[arg(short = 'r', long)]
        recursive: bool,
    },
    /// Pull files from an instance: INSTANCE/PATH... TARGET (`-` for stdout)
    ///
    /// Pulled files and directories keep the guest's permission bits but never
    /// setuid, setgid or sticky. A recursive pull recreates a symlink only if
    /// it points inside the pulled tree, as a relative link to the same place;
    /// others (`-> /etc`, `-> ../../..`) are skipped with a warning.
    Pull {
        #[arg(required = true, num_args = 2..)]
        paths: Vec<String>,
        #[arg(short = 'p', long = "create-dirs")]
        create_dirs: bool,
        #[arg(short = 'r', long)]
        recursive: bool,
    },
    /// Delete files in an instance
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(required = true)]
        paths: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Build an image locally and import it
    Build {
        /// Recipe name, e.g. debian/12 or busybox
        name: String,
        /// Alias to point at the built image (repeatable; default: the recipe name)
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Where to write the tarball
        #[arg(long)]
        output: Option<PathBuf>,
        /// Only build, do not import
        #[arg(long)]
        no_import: bool,
        /// Print the build log
        #[arg(short, long)]
        verbose: bool,
    },
    /// Import an image tarball (unified, or metadata + rootfs)
    Import {
        tarball: PathBuf,
        rootfs: Option<PathBuf>,
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Make the image public
        #[arg(long)]
        public: bool,
    },
    /// List images
    #[command(visible_alias = "ls")]
    List {
        filters: Vec<String>,
        /// Columns, as lxc: l (alias), L (all aliases), f, F (full
        /// fingerprint), p, d, a, t, s, u
        #[arg(short = 'c', long = "columns", default_value = "lfpdatsu")]
        columns: String,
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Delete images
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Manage image aliases
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Copy an image from a remote: REMOTE:IMAGE [DEST:] (the destination
    /// downloads it; a private image by a one-time secret of the source)
    #[command(visible_alias = "cp")]
    Copy {
        source: String,
        /// Where to copy it (default: the default remote)
        destination: Option<String>,
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Keep the copy updated from its source (every
        /// images.auto_update_interval hours)
        #[arg(long)]
        auto_update: bool,
        /// Make the copy public
        #[arg(long)]
        public: bool,
    },
    /// Refresh images from the servers they were copied from
    Refresh {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show image details
    Info { image: String },
    /// Show image properties as YAML
    Show { image: String },
}

#[derive(Subcommand, Debug)]
pub enum AliasCmd {
    /// Create an alias: ALIAS FINGERPRINT
    Create {
        alias: String,
        target: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    #[command(visible_alias = "rm")]
    Delete { alias: String },
    #[command(visible_alias = "ls")]
    List {
        /// A remote to list (`REMOTE:`)
        remote: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Set config keys: [REMOTE:]INSTANCE KEY=VALUE... or INSTANCE KEY VALUE
    /// (VALUE `-` reads stdin); server keys: [REMOTE:] KEY VALUE
    Set {
        #[arg(required = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print a config value: [REMOTE:]INSTANCE KEY, or a server key: [REMOTE:] KEY
    Get {
        name: String,
        key: Option<String>,
        #[arg(short, long)]
        expanded: bool,
    },
    /// Remove config keys: [REMOTE:]INSTANCE KEY..., or server keys: [REMOTE:] KEY...
    Unset { name: String, keys: Vec<String> },
    /// Show an instance's configuration as YAML, or the server's: [REMOTE:]
    Show {
        name: Option<String>,
        #[arg(short, long)]
        expanded: bool,
    },
    /// Edit the configuration as YAML (from stdin when it is not a terminal)
    Edit { name: String },
    /// Manage devices
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Manage the clients a server trusts
    #[command(subcommand)]
    Trust(TrustCmd),
}

#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// Add a device: NAME DEVICE TYPE [KEY=VALUE...]
    Add {
        name: String,
        device: String,
        #[arg(value_name = "TYPE")]
        kind: String,
        props: Vec<String>,
    },
    /// Remove devices
    #[command(visible_alias = "rm")]
    Remove {
        name: String,
        #[arg(required = true)]
        devices: Vec<String>,
    },
    /// Show the devices as YAML
    Show { name: String },
    /// List device names
    #[command(visible_alias = "ls")]
    List { name: String },
}

#[derive(Subcommand, Debug)]
pub enum OperationCmd {
    #[command(visible_alias = "ls")]
    List {
        /// A remote to list (`REMOTE:`)
        remote: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    Show {
        id: String,
    },
    /// Cancel an operation
    #[command(visible_alias = "rm")]
    Delete {
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("kante").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn launch_flags() {
        let Command::Launch(l) = parse(&[
            "launch",
            "debian/12",
            "c1",
            "-c",
            "limits.memory=256MiB",
            "-p",
            "default",
            "-p",
            "x",
            "--wait",
        ])
        .command
        else {
            panic!()
        };
        assert_eq!(l.create.image, "debian/12");
        assert_eq!(l.create.name.as_deref(), Some("c1"));
        assert_eq!(l.create.config, vec!["limits.memory=256MiB"]);
        assert_eq!(l.create.profiles, vec!["default", "x"]);
        assert!(l.wait);
        assert_eq!(l.timeout, 120);
    }

    #[test]
    fn launch_has_no_host_setup_flags() {
        let e = Cli::try_parse_from(["kante", "launch", "bb", "c1", "--auto"]).unwrap_err();
        assert!(
            e.to_string().contains("unexpected argument '--auto'"),
            "{e}"
        );
        let Command::Launch(l) = parse(&["launch", "bb", "c1", "-n", "br0", "-t", "c2-m4"]).command
        else {
            panic!()
        };
        assert_eq!(l.create.network.as_deref(), Some("br0"));
        assert_eq!(l.create.instance_type.as_deref(), Some("c2-m4"));
        let Command::Init(i) = parse(&["init", "--auto", "--network-name", "b1"]).command else {
            panic!()
        };
        assert!(i.auto && i.create.image.is_empty());
        assert_eq!(i.network_name, "b1");
        assert!(Cli::try_parse_from(["kante", "init", "--auto", "bb"]).is_err());
    }

    #[test]
    fn exec_takes_everything_after_the_name() {
        let Command::Exec(e) =
            parse(&["exec", "c1", "--env", "A=B", "--", "sh", "-c", "echo hi"]).command
        else {
            panic!()
        };
        assert_eq!(e.command, vec!["sh", "-c", "echo hi"]);
        assert_eq!(e.env, vec!["A=B"]);
        let Command::Exec(e) = parse(&["exec", "c1", "-T", "ls", "-la"]).command else {
            panic!()
        };
        assert_eq!(e.command, vec!["ls", "-la"]);
        assert!(e.force_noninteractive);
        assert!(Cli::try_parse_from(["kante", "exec", "c1", "-t", "-T", "--", "x"]).is_err());
    }

    #[test]
    fn stop_accepts_negative_timeout_and_freeze_alias() {
        let Command::Stop { timeout, force, .. } =
            parse(&["stop", "c1", "--timeout", "-1", "-f"]).command
        else {
            panic!()
        };
        assert_eq!((timeout, force), (-1, true));
        assert!(matches!(
            parse(&["freeze", "c1"]).command,
            Command::Pause { .. }
        ));
    }

    #[test]
    fn nested_subcommands() {
        assert!(matches!(
            parse(&["image", "alias", "create", "a", "fp"]).command,
            Command::Image(ImageCmd::Alias(AliasCmd::Create { .. }))
        ));
        assert!(matches!(
            parse(&[
                "config",
                "device",
                "add",
                "c1",
                "data",
                "disk",
                "path=/mnt",
                "source=/tmp"
            ])
            .command,
            Command::Config(ConfigCmd::Device(DeviceCmd::Add { .. }))
        ));
        let Command::List(l) = parse(&["list", "-c", "ns", "--format", "csv"]).command else {
            panic!()
        };
        assert_eq!((l.columns.as_str(), l.format), ("ns", Format::Csv));
        assert!(Cli::try_parse_from(["kante", "file", "push", "only-one"]).is_err());
    }
}
