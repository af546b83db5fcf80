//! Grammar of the network, storage and profile subcommands (lxc 5.0's).

use clap::Subcommand;

use super::DeviceCmd;
use crate::table::Format;

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network: NAME [KEY=VALUE...]
    Create {
        name: String,
        #[arg(value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Network type (bridge or macvlan)
        #[arg(short = 't', long = "type")]
        kind: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Cluster member: record only its own keys (pending until the
        /// create without --target)
        #[arg(long)]
        target: Option<String>,
    },
    /// List networks (managed ones and host interfaces)
    #[command(visible_alias = "ls")]
    List {
        /// A remote to list (`REMOTE:`)
        remote: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a network as YAML
    Show {
        #[arg(add = crate::complete::networks())]
        name: String,
        /// Cluster member whose view to show
        #[arg(long)]
        target: Option<String>,
    },
    /// Show a network's runtime state (addresses, counters)
    Info {
        #[arg(add = crate::complete::networks())]
        name: String,
    },
    /// List a network's DHCP leases
    #[command(visible_alias = "list-leases")]
    Leases {
        #[arg(add = crate::complete::networks())]
        name: String,
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Delete a network
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(add = crate::complete::networks())]
        name: String,
    },
    /// Print a network config value
    Get {
        #[arg(add = crate::complete::networks())]
        name: String,
        key: String,
        /// Cluster member whose view to read
        #[arg(long)]
        target: Option<String>,
    },
    /// Set network config keys: NAME KEY=VALUE... or NAME KEY VALUE
    Set {
        #[arg(add = crate::complete::networks())]
        name: String,
        #[arg(required = true, allow_hyphen_values = true)]
        args: Vec<String>,
        /// Cluster member whose own keys to set
        #[arg(long)]
        target: Option<String>,
    },
    /// Remove network config keys
    Unset {
        #[arg(add = crate::complete::networks())]
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
        /// Cluster member whose own keys to remove
        #[arg(long)]
        target: Option<String>,
    },
    /// Edit a network as YAML (from stdin when it is not a terminal)
    Edit {
        #[arg(add = crate::complete::networks())]
        name: String,
    },
    /// Rename a network
    Rename {
        #[arg(add = crate::complete::networks())]
        name: String,
        new_name: String,
    },
    /// Attach a network to an instance as a new nic device
    Attach {
        #[arg(add = crate::complete::networks())]
        network: String,
        instance: String,
        /// Device name (default: the network's name)
        device: Option<String>,
        /// Interface name inside the instance
        ifname: Option<String>,
    },
    /// Detach a network from an instance (removes its nic device)
    Detach {
        #[arg(add = crate::complete::networks())]
        network: String,
        instance: String,
        device: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum StorageCmd {
    /// Create a storage pool: POOL DRIVER [KEY=VALUE...]
    Create {
        pool: String,
        driver: String,
        #[arg(value_name = "KEY=VALUE")]
        config: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List storage pools
    #[command(visible_alias = "ls")]
    List {
        /// A remote to list (`REMOTE:`)
        remote: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a storage pool as YAML
    Show {
        pool: String,
        /// Show the pool's space and inodes instead (as YAML)
        #[arg(long)]
        resources: bool,
    },
    /// Show a storage pool's usage and users
    Info {
        pool: String,
        /// Show sizes in bytes
        #[arg(long)]
        bytes: bool,
    },
    /// Delete a storage pool
    #[command(visible_alias = "rm")]
    Delete { pool: String },
    /// Print a storage pool config value
    Get { pool: String, key: String },
    /// Set storage pool config keys: POOL KEY=VALUE... or POOL KEY VALUE
    Set {
        pool: String,
        #[arg(required = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Remove storage pool config keys
    Unset {
        pool: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Edit a storage pool as YAML (from stdin when it is not a terminal)
    Edit { pool: String },
    /// Custom storage volumes
    Volume {
        #[command(subcommand)]
        cmd: super::VolumeCmd,
        /// Cluster member holding the volume (or to make it on; for copy
        /// and move, the member it goes to)
        #[arg(long, global = true)]
        target: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProfileCmd {
    /// List profiles
    #[command(visible_alias = "ls")]
    List {
        /// A remote to list (`REMOTE:`)
        remote: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a profile as YAML
    Show {
        #[arg(add = crate::complete::profiles())]
        name: String,
    },
    /// Create an empty profile
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Copy a profile: SOURCE DESTINATION
    #[command(visible_alias = "cp")]
    Copy { source: String, destination: String },
    /// Delete profiles
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print a profile config value
    Get {
        #[arg(add = crate::complete::profiles())]
        name: String,
        key: String,
    },
    /// Set profile config keys: NAME KEY=VALUE... or NAME KEY VALUE
    Set {
        #[arg(add = crate::complete::profiles())]
        name: String,
        #[arg(required = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Remove profile config keys
    Unset {
        #[arg(add = crate::complete::profiles())]
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Edit a profile as YAML (from stdin when it is not a terminal)
    Edit {
        #[arg(add = crate::complete::profiles())]
        name: String,
    },
    /// Rename a profile
    #[command(visible_alias = "mv")]
    Rename {
        #[arg(add = crate::complete::profiles())]
        name: String,
        new_name: String,
    },
    /// Manage a profile's devices
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Add a profile to an instance: INSTANCE PROFILE
    Add { instance: String, profile: String },
    /// Remove a profile from an instance: INSTANCE PROFILE
    Remove { instance: String, profile: String },
    /// Set an instance's profiles: INSTANCE PROFILE[,PROFILE...] ("" for none)
    #[command(visible_alias = "apply")]
    Assign { instance: String, profiles: String },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("kante").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn copy_snapshot_and_move() {
        let Command::Copy(a) = parse(&[
            "copy",
            "c1/s0",
            "c3",
            "--instance-only",
            "-c",
            "a=b",
            "-p",
            "x",
            "--refresh",
        ])
        .command
        else {
            panic!()
        };
        assert_eq!(
            (a.source.as_str(), a.destination.as_deref()),
            ("c1/s0", Some("c3"))
        );
        assert!(a.instance_only && a.refresh && !a.no_profiles);
        assert_eq!(
            (a.config, a.profiles),
            (vec!["a=b".into()], vec!["x".into()])
        );
        let Command::Snapshot {
            instance,
            snapshot,
            reuse,
            ..
        } = parse(&["snapshot", "c1", "s0", "--reuse"]).command
        else {
            panic!()
        };
        assert_eq!(
            (instance.as_str(), snapshot.as_deref(), reuse),
            ("c1", Some("s0"), true)
        );
        assert!(matches!(parse(&["mv", "a", "b"]).command, Command::Move(_)));
        assert!(matches!(parse(&["cp", "a", "b"]).command, Command::Copy(_)));
    }

    #[test]
    fn network_storage_profile_grammar() {
        let Command::Network(NetworkCmd::Create {
            name, config, kind, ..
        }) = parse(&[
            "network",
            "create",
            "br1",
            "ipv4.address=auto",
            "--type",
            "bridge",
        ])
        .command
        else {
            panic!()
        };
        assert_eq!((name.as_str(), kind.as_deref()), ("br1", Some("bridge")));
        assert_eq!(config, vec!["ipv4.address=auto"]);
        assert!(matches!(
            parse(&["network", "attach", "br1", "c1", "eth1", "if1"]).command,
            Command::Network(NetworkCmd::Attach {
                device: Some(_),
                ifname: Some(_),
                ..
            })
        ));
        assert!(matches!(
            parse(&["storage", "create", "p", "btrfs", "size=1GiB"]).command,
            Command::Storage(StorageCmd::Create { .. })
        ));
        assert!(matches!(
            parse(&["profile", "device", "add", "p1", "d", "disk", "path=/x"]).command,
            Command::Profile(ProfileCmd::Device(DeviceCmd::Add { .. }))
        ));
        assert!(matches!(
            parse(&["profile", "ls", "--format", "json"]).command,
            Command::Profile(ProfileCmd::List {
                format: Format::Json,
                ..
            })
        ));
        assert!(Cli::try_parse_from(["kante", "storage", "create", "p"]).is_err());
    }
}
