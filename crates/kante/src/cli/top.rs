//! Grammar of `kante top` (its sort keys and sampling).

/// What the rows are ordered by (largest first, but names A to Z).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Cpu,
    Mem,
    Disk,
    Net,
}

/// `kante top`'s arguments.
#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Remotes to watch (`REMOTE:`; default: the default remote)
    pub remotes: Vec<String>,
    /// Sort by (keys on a terminal: n c m d t)
    #[arg(long, value_enum, default_value = "cpu")]
    pub sort: SortKey,
    /// Seconds between samples
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
    /// Print one table (after two samples) and exit
    #[arg(long)]
    pub once: bool,
}
