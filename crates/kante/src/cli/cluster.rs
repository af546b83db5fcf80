//! `kante cluster …` and `kante service …`: the grammar (dispatch in
//! `cmd/cluster.rs`).

use clap::Subcommand;

use crate::table::Format;

#[derive(Subcommand, Debug, Clone)]
pub enum ClusterCmd {
    /// Make this server a cluster of one, this member named NAME: [REMOTE:] NAME
    Enable {
        #[arg(required = true, num_args = 1..=2)]
        args: Vec<String>,
    },
    /// Print a one-time join token for a new member NAME: [REMOTE:]NAME,
    /// or [REMOTE:] --name NAME
    Add {
        name: Option<String>,
        /// Cluster member name (instead of the argument)
        #[arg(long = "name", value_name = "NAME")]
        member: Option<String>,
    },
    /// Join the cluster a token (from `kante cluster add`) names: [REMOTE:] TOKEN
    Join {
        #[arg(required = true, num_args = 1..=2)]
        args: Vec<String>,
    },
    /// List the cluster's members: [REMOTE:]
    #[command(visible_alias = "ls")]
    List {
        remote: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show one member: [REMOTE:]NAME
    Show { name: String },
    /// Evacuate a member: move or stop its instances (each by its cluster.evacuate), place nothing there: [REMOTE:]NAME
    Evacuate {
        name: String,
        /// Force one action for every instance: stop or migrate
        #[arg(long = "action")]
        action: Option<String>,
        /// Accepted for lxc compatibility (kante does not ask)
        #[arg(long)]
        force: bool,
    },
    /// Restore an evacuated member: bring its instances back and start those it stopped: [REMOTE:]NAME
    Restore {
        name: String,
        /// Accepted for lxc compatibility (kante does not ask)
        #[arg(long)]
        force: bool,
    },
    /// Manage cluster groups (`--target @GROUP` places among a group's members)
    #[command(subcommand)]
    Group(GroupCmd),
    /// Remove a member (refused while it holds instances, unless --force): [REMOTE:]NAME
    #[command(visible_alias = "rm")]
    Remove {
        name: String,
        /// Remove a member even if it holds instances or is offline (asks
        /// for confirmation unless --yes)
        #[arg(short, long)]
        force: bool,
        /// Don't ask for confirmation of --force
        #[arg(long)]
        yes: bool,
    },
}

/// `kante cluster group …`, as `lxc cluster group`.
#[derive(Subcommand, Debug, Clone)]
pub enum GroupCmd {
    /// Create a cluster group: [REMOTE:]GROUP
    Create {
        name: String,
        /// Its description
        #[arg(long)]
        description: Option<String>,
    },
    /// List the cluster groups with their members: [REMOTE:]
    #[command(visible_alias = "ls")]
    List {
        remote: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a cluster group: [REMOTE:]GROUP
    Show { name: String },
    /// Put a member in exactly these groups: [REMOTE:]MEMBER GROUP[,GROUP...]
    Assign { member: String, groups: String },
    /// Take a member out of a group (it must stay in one): [REMOTE:]MEMBER GROUP
    Remove { member: String, group: String },
    /// Rename a cluster group: [REMOTE:]GROUP NEW
    Rename { name: String, new: String },
    /// Delete an empty cluster group: [REMOTE:]GROUP
    #[command(visible_alias = "rm")]
    Delete { name: String },
}

/// `kante service …`: the cluster's service discovery records.
#[derive(Subcommand, Debug, Clone)]
pub enum ServiceCmd {
    /// List the live services (name, instance, address, port, member): [REMOTE:]
    #[command(visible_alias = "ls")]
    List {
        remote: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
}
