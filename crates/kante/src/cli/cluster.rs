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
    /// Print a one-time join token for a new member NAME: [REMOTE:]NAME
    Add { name: String },
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
    /// Remove a member (refused while it holds instances, unless --force): [REMOTE:]NAME
    #[command(visible_alias = "rm")]
    Remove {
        name: String,
        #[arg(long)]
        force: bool,
    },
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
