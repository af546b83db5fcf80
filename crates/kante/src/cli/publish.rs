//! `kante publish`'s arguments (lxc 5.0's `lxc publish`).

use clap::Args;

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The instance or snapshot to publish: [REMOTE:]INSTANCE[/SNAPSHOT]
    pub instance: String,
    /// Where the image goes ([REMOTE:]; the instance's server: only the same one)
    #[arg(value_name = "REMOTE:")]
    pub remote: Option<String>,
    /// Image properties (KEY=VALUE), after the instance's own `image.*` keys
    #[arg(value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// New alias for the image (repeatable)
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Make the image public (served to untrusted clients)
    #[arg(long)]
    pub public: bool,
    /// Stop a running instance first, and start it again afterwards
    #[arg(short, long)]
    pub force: bool,
    /// Compression of the image tarball (gzip, zstd, none)
    #[arg(long)]
    pub compression: Option<String>,
    /// Expiry of the image (RFC 3339)
    #[arg(long)]
    pub expire: Option<String>,
}
