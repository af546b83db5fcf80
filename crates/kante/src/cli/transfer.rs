//! Arguments of `kante move` and the transfer mode shared with `kante copy`.

use clap::{Args, ValueEnum};

/// How instance data travels between two servers (lxc's `--mode`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferMode {
    /// The target connects to the source
    Pull,
    /// The source connects to the target
    Push,
    /// Both wait; the client carries the data between them
    Relay,
}

#[derive(Args, Debug)]
pub struct MoveArgs {
    /// [REMOTE:]INSTANCE (or INSTANCE/SNAPSHOT, to rename a snapshot)
    pub source: String,
    /// [REMOTE:][NAME]: a new name, or another server (`host2:` keeps the
    /// name); none with --target
    #[arg(default_value = "", hide_default_value = true)]
    pub destination: String,
    /// Move the instance without its snapshots
    #[arg(long)]
    pub instance_only: bool,
    /// Move a running instance by stopping it, moving it and starting it there
    #[arg(long)]
    pub stateless: bool,
    /// Transfer mode between servers (default: the target pulls, or the
    /// source pushes when it has no network address; the client relays
    /// when the servers cannot reach each other)
    #[arg(long, value_enum)]
    pub mode: Option<TransferMode>,
    /// Cluster member to move the instance to (it keeps its name; a
    /// running one is stopped, moved and started there)
    #[arg(long)]
    pub target: Option<String>,
    /// Storage pool on the target server
    #[arg(short = 's', long = "storage")]
    pub storage: Option<String>,
    /// Config key/value to apply to the moved instance
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Profile to add to the moved instance's profiles (repeatable)
    #[arg(short = 'p', long = "profile")]
    pub profiles: Vec<String>,
    /// Unset all profiles on the moved instance
    #[arg(long, conflicts_with = "profiles")]
    pub no_profiles: bool,
    /// Override a device key of the moved instance: DEVICE,KEY=VALUE
    #[arg(short = 'd', long = "device", value_name = "DEVICE,KEY=VALUE")]
    pub device: Vec<String>,
}
