//! `kante storage volume …`: custom volumes, as lxc spells them.

use clap::Subcommand;

use crate::table::Format;

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a custom volume: POOL VOLUME [KEY=VALUE...]
    Create {
        pool: String,
        volume: String,
        #[arg(value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// filesystem (the only content type of system containers)
        #[arg(long = "type", default_value = "filesystem")]
        content_type: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List the volumes of a pool
    #[command(visible_alias = "ls")]
    List {
        pool: String,
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a custom volume as YAML
    Show { pool: String, volume: String },
    /// Show a custom volume's usage and snapshots
    Info { pool: String, volume: String },
    /// Print a custom volume config value
    Get {
        pool: String,
        volume: String,
        key: String,
    },
    /// Set custom volume config keys: POOL VOLUME KEY=VALUE... or KEY VALUE
    Set {
        pool: String,
        volume: String,
        #[arg(required = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Remove custom volume config keys
    Unset {
        pool: String,
        volume: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Edit a custom volume as YAML (from stdin when it is not a terminal)
    Edit { pool: String, volume: String },
    /// Rename a custom volume: POOL OLD NEW
    Rename {
        pool: String,
        volume: String,
        new_name: String,
    },
    /// Copy a custom volume, as lxc: [REMOTE:]POOL/VOLUME[/SNAPSHOT]
    /// [REMOTE:]POOL/VOLUME (another remote: between servers; --target:
    /// to that cluster member), or POOL SOURCE DESTINATION
    #[command(visible_alias = "cp")]
    Copy {
        /// SOURCE DESTINATION, or POOL SOURCE DESTINATION
        #[arg(num_args = 2..=3, required = true, value_name = "ARGS")]
        args: Vec<String>,
        /// Pool of the copy in the POOL SOURCE DESTINATION form (default: the source's)
        #[arg(long)]
        target_pool: Option<String>,
        /// Transfer mode between servers (default: the target pulls, or
        /// the source pushes, or this client relays)
        #[arg(long, value_enum)]
        mode: Option<super::TransferMode>,
        /// Copy the volume without its snapshots
        #[arg(long)]
        volume_only: bool,
    },
    /// Move a custom volume: [REMOTE:]POOL/VOLUME [REMOTE:]POOL/VOLUME
    /// (another remote: copied there, then deleted here; --target: to
    /// that cluster member; same pool and server: a rename)
    #[command(visible_alias = "mv")]
    Move {
        source: String,
        destination: String,
        /// Transfer mode between servers (default: the target pulls, or
        /// the source pushes, or this client relays)
        #[arg(long, value_enum)]
        mode: Option<super::TransferMode>,
    },
    /// Delete a custom volume (refused while an instance uses it), or VOLUME/SNAPSHOT
    #[command(visible_alias = "rm")]
    Delete { pool: String, volume: String },
    /// Attach a custom volume to an instance: POOL VOLUME INSTANCE [DEVICE] PATH
    Attach {
        pool: String,
        volume: String,
        instance: String,
        /// [DEVICE] PATH: the device name defaults to the volume's
        #[arg(num_args = 1..=2, required = true)]
        rest: Vec<String>,
        /// Mount it read-only
        #[arg(long)]
        readonly: bool,
    },
    /// Detach a custom volume from an instance: POOL VOLUME INSTANCE [DEVICE]
    Detach {
        pool: String,
        volume: String,
        instance: String,
        device: Option<String>,
    },
    /// Snapshot a custom volume: POOL VOLUME [SNAPSHOT]
    Snapshot {
        pool: String,
        volume: String,
        snapshot: Option<String>,
    },
    /// Restore a custom volume from one of its snapshots
    Restore {
        pool: String,
        volume: String,
        snapshot: String,
    },
}
