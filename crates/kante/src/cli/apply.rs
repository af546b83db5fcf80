//! `kante apply`'s arguments.

use clap::Args;

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The site file (YAML; an LXD preseed is a one-host site)
    pub file: String,
    /// Show the plan as a diff and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before deleting anything (for scripts)
    #[arg(short, long)]
    pub yes: bool,
    /// Delete the instances this site made that its file no longer names
    #[arg(long)]
    pub prune: bool,
    /// Only these hosts of the site (repeatable)
    #[arg(long = "target")]
    pub targets: Vec<String>,
}

/// `kante site …`.
#[derive(clap::Subcommand, Debug)]
pub enum SiteCmd {
    /// Write the current state of hosts as a site file (to stdout); a
    /// cluster exported alone is written as its members
    Export {
        /// The hosts, by remote (default: the default remote)
        remotes: Vec<String>,
        /// The site's name
        #[arg(long, default_value = "site")]
        name: String,
    },
}
