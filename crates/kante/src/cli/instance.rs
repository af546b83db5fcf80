//! Grammar of the verbs that make or list instances: `launch`, `init`,
//! `copy`, `export`, `import` and `list` (lxc 5.0's flags).

use std::path::PathBuf;

use clap::Args;

use super::TransferMode;
use crate::table::Format;

#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// `kante init --auto`: set this host up like `lxd init --auto` (a managed
    /// bridge with NAT on a free subnet, eth0 of the default profile)
    #[arg(long, conflicts_with_all = ["image", "name", "config", "profiles", "no_profiles", "ephemeral"])]
    pub auto: bool,
    /// Name of the network `--auto` makes
    #[arg(long, default_value = "kantebr0", requires = "auto")]
    pub network_name: String,
    /// `kante init --preseed`: apply LXD's preseed YAML read from stdin (all or nothing)
    #[arg(long, conflicts_with_all = ["auto", "image", "name", "config", "profiles", "no_profiles", "ephemeral"])]
    pub preseed: bool,
    /// `kante init --interactive`: the questions `lxd init` asks, then applied like a preseed
    #[arg(long, conflicts_with_all = ["auto", "preseed", "image", "name", "config", "profiles", "no_profiles", "ephemeral"])]
    pub interactive: bool,
    #[command(flatten)]
    pub create: CreateArgs,
}

/// What `launch` and `init` share: the new instance.
#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Image alias or fingerprint (prefix), `[REMOTE:]IMAGE`
    #[arg(default_value = "", hide_default_value = true, add = crate::complete::images())]
    pub image: String,
    /// Instance name (the server picks one if omitted)
    pub name: Option<String>,
    /// Config key/value to apply to the new instance
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Profile to apply (repeatable)
    #[arg(short = 'p', long = "profile", add = crate::complete::profiles())]
    pub profiles: Vec<String>,
    /// Create the instance with no profiles applied
    #[arg(long)]
    pub no_profiles: bool,
    /// Storage pool name
    #[arg(short = 's', long = "storage", add = crate::complete::pools())]
    pub storage: Option<String>,
    /// Ephemeral instance (deleted when stopped)
    #[arg(short = 'e', long)]
    pub ephemeral: bool,
    /// Instance description
    #[arg(long)]
    pub description: Option<String>,
    /// Override a device key of the profiles for this instance: DEVICE,KEY=VALUE
    #[arg(short = 'd', long = "device", value_name = "DEVICE,KEY=VALUE")]
    pub device: Vec<String>,
    /// Network to attach as eth0
    #[arg(short = 'n', long = "network", add = crate::complete::networks())]
    pub network: Option<String>,
    /// Instance type: cCPUS-mGIB (e.g. c2-m4), as LXD's shorthand
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub instance_type: Option<String>,
    /// Cluster member to create the instance on (default: the cluster's
    /// scheduler picks one)
    #[arg(long)]
    pub target: Option<String>,
    /// Create an empty instance (no image: an empty root filesystem)
    #[arg(long)]
    pub empty: bool,
    /// Create a virtual machine (refused: Kante runs containers only)
    #[arg(long)]
    pub vm: bool,
    /// The image's remote when it is not the instance's (`REMOTE:` split
    /// off the image by the router): the server downloads from it
    #[arg(skip)]
    pub image_remote: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(add = crate::complete::instances())]
    pub instance: String,
    /// Where to write the tarball (default: INSTANCE.tar.gz, .tar.zst or .tar)
    pub file: Option<PathBuf>,
    /// Leave the snapshots out
    #[arg(long)]
    pub instance_only: bool,
    /// gzip (default), zstd or none
    #[arg(long, default_value = "gzip")]
    pub compression: String,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    pub file: PathBuf,
    /// Name of the new instance (default: the name in the backup)
    pub name: Option<String>,
    /// Storage pool to import into
    #[arg(short = 's', long = "storage", add = crate::complete::pools())]
    pub storage: Option<String>,
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// INSTANCE or INSTANCE/SNAPSHOT
    #[arg(add = crate::complete::instances())]
    pub source: String,
    /// New instance name (the server picks one if omitted)
    pub destination: Option<String>,
    /// Copy the instance without its snapshots
    #[arg(long)]
    pub instance_only: bool,
    /// Copy a stateful instance stateless (the only kind of copy here)
    #[arg(long)]
    pub stateless: bool,
    /// Config key/value to apply to the new instance
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Profile to add to the copy (repeatable)
    #[arg(short = 'p', long = "profile", add = crate::complete::profiles())]
    pub profiles: Vec<String>,
    /// Create the copy with no profiles applied
    #[arg(long)]
    pub no_profiles: bool,
    /// Update an existing copy (only copies what changed)
    #[arg(long)]
    pub refresh: bool,
    /// Make the copy ephemeral
    #[arg(short = 'e', long)]
    pub ephemeral: bool,
    /// Storage pool for the copy
    #[arg(short = 's', long = "storage", add = crate::complete::pools())]
    pub storage: Option<String>,
    /// Transfer mode when the copy goes to another server
    #[arg(long, value_enum)]
    pub mode: Option<TransferMode>,
    /// Override a device key for the copy: DEVICE,KEY=VALUE (the device
    /// comes from the source's own devices or its profiles)
    #[arg(short = 'd', long = "device", value_name = "DEVICE,KEY=VALUE")]
    pub device: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Wait until the guest's init reports running (or degraded)
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Immediately attach to the console once started (Ctrl+a q detaches)
    #[arg(long, value_name = "TYPE", num_args = 0..=1, require_equals = true, default_missing_value = "console")]
    pub console: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Filters: a name prefix, or key=value (status=running, type=container, config keys)
    pub filters: Vec<String>,
    /// Columns, as lxc: shorthand letters (default "ns46tS", with L in a
    /// cluster) or key:NAME entries, comma separated
    #[arg(short = 'c', long = "columns", default_value = "ns46tS")]
    pub columns: String,
    /// Fast mode (same as --columns=nsacPt)
    #[arg(long, conflicts_with = "columns")]
    pub fast: bool,
    /// Display instances from all projects (Kante has one, `default`):
    /// adds a PROJECT column
    #[arg(long)]
    pub all_projects: bool,
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    pub format: Format,
}
