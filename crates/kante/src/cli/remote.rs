//! Grammar of `kante remote …` and `kante config trust …` (lxc 5.0's).

use clap::Subcommand;

use crate::table::Format;

#[derive(Subcommand, Debug)]
pub enum RemoteCmd {
    /// Add a remote: NAME ADDRESS (host, host:port, https://host:port,
    /// [v6]:port; port 8443 by default), or NAME TOKEN (from `config trust add`)
    Add {
        name: String,
        /// The server's address, or a trust token
        address: String,
        /// Trust the server's certificate without asking
        #[arg(long)]
        accept_certificate: bool,
        /// The server's trust password (`--password` alone asks for it)
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "")]
        password: Option<String>,
        /// A trust token from `kante config trust add`
        #[arg(long, conflicts_with = "password")]
        token: Option<String>,
        /// kante, lxd or simplestreams
        #[arg(long, default_value = "kante")]
        protocol: String,
        /// Public image server (no client certificate needed)
        #[arg(long)]
        public: bool,
    },
    /// List the remotes
    #[command(visible_alias = "ls")]
    List {
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Remove a remote
    #[command(visible_alias = "rm")]
    Remove {
        #[arg(add = crate::complete::remotes())]
        name: String,
    },
    /// Rename a remote
    #[command(visible_alias = "mv")]
    Rename {
        #[arg(add = crate::complete::remotes())]
        name: String,
        new_name: String,
    },
    /// Make a remote the default one
    Switch {
        #[arg(add = crate::complete::remotes())]
        name: String,
    },
    /// Print the default remote
    GetDefault,
    /// Change a remote's address
    SetUrl { name: String, address: String },
}

/// What a trusted client is limited to (LXD's `--restricted`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Restriction {
    /// Restrict the certificate to the projects of --projects (none if
    /// not given): it cannot change the server
    #[arg(long)]
    pub restricted: bool,
    /// Comma-separated projects a restricted certificate may reach
    #[arg(long, requires = "restricted")]
    pub projects: Option<String>,
}

impl Restriction {
    /// The `restricted` and `projects` fields of a certificate request.
    pub fn fields(&self) -> (bool, Vec<String>) {
        let projects = self
            .projects
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        (self.restricted, projects)
    }

    /// Puts `restricted` and `projects` into a certificate request when
    /// the certificate is restricted (an unrestricted one sends neither).
    pub fn add_to(&self, body: &mut serde_json::Value) {
        let (restricted, projects) = self.fields();
        if restricted {
            body["restricted"] = true.into();
            body["projects"] = projects.into();
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TrustCmd {
    /// Make a one-time trust token for a new client: [REMOTE:] NAME
    Add {
        #[arg(required = true, num_args = 1..=2)]
        args: Vec<String>,
        /// Print a one-time login link for the web view instead
        #[arg(long)]
        ui: bool,
        #[command(flatten)]
        limits: Restriction,
    },
    /// Trust a client certificate from a file: [REMOTE:] FILE
    AddCertificate {
        #[arg(required = true, num_args = 1..=2)]
        args: Vec<String>,
        /// Name of the client (default: the certificate's)
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        limits: Restriction,
    },
    /// List the trusted clients: [REMOTE:]
    #[command(visible_alias = "ls")]
    List {
        remote: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Stop trusting a client: [REMOTE:] FINGERPRINT|NAME
    #[command(visible_alias = "rm")]
    Remove {
        #[arg(required = true, num_args = 1..=2)]
        args: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, ConfigCmd};

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("kante").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn remote_add_password_forms() {
        let pw = |args: &[&str]| match parse(args).command {
            Command::Remote(RemoteCmd::Add { password, .. }) => password,
            _ => panic!(),
        };
        assert_eq!(pw(&["remote", "add", "r", "h"]), None);
        assert_eq!(
            pw(&["remote", "add", "r", "h", "--password"]),
            Some("".into())
        );
        assert_eq!(
            pw(&["remote", "add", "r", "h", "--password=s3"]),
            Some("s3".into())
        );
        assert!(matches!(
            parse(&["config", "trust", "add", "r:", "c2"]).command,
            Command::Config(ConfigCmd::Trust(TrustCmd::Add { .. }))
        ));
        match parse(&[
            "config",
            "trust",
            "add",
            "c3",
            "--restricted",
            "--projects",
            "default, web",
        ])
        .command
        {
            Command::Config(ConfigCmd::Trust(TrustCmd::Add { limits, .. })) => {
                assert_eq!(
                    limits.fields(),
                    (true, vec!["default".into(), "web".into()])
                )
            }
            _ => panic!(),
        }
        assert!(
            Cli::try_parse_from(["kante", "config", "trust", "add", "c4", "--projects", "x"])
                .is_err()
        );
    }
}
