//! Grammar of `kante lab …`: a lab of hosts on one machine (network
//! namespaces, each with its own kanted, on one uplink bridge).

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// Make a lab: N hosts, each a network namespace with its own kanted
    Up(LabUpArgs),
    /// Show the lab's hosts: namespaces, addresses, daemons, instances
    Status(LabWhich),
    /// Remove everything a lab made (safe to run twice, or after a failed `up`)
    Down(LabWhich),
    /// Run a command in a host's network namespace, as that host: HOST -- CMD…
    Exec {
        #[command(flatten)]
        which: LabWhich,
        /// The host: h1, h2, …
        host: String,
        /// The command and its arguments
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// Which lab: its name and, when not the default, its directory.
#[derive(Args, Debug, Clone)]
pub struct LabWhich {
    /// The lab's name (letters, digits and '-'; at most 10 characters)
    #[arg(long, default_value = "lab")]
    pub name: String,
    /// The lab's directory (default /var/lib/kante-lab/NAME)
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct LabUpArgs {
    #[command(flatten)]
    pub which: LabWhich,
    /// How many hosts (1 to 16)
    #[arg(long, default_value_t = 3)]
    pub hosts: u32,
    /// The uplink's subnet: the caller gets its first address, host i .10+i
    #[arg(long, default_value = "10.248.0.0/24")]
    pub subnet: String,
    /// The range the hosts' managed bridges take their /24s from (host i: the i-th)
    #[arg(long, default_value = "10.249.0.0/16")]
    pub bridge_range: String,
    /// The kanted binary (default: the one beside this kante, else on PATH)
    #[arg(long)]
    pub kanted: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn lab(args: &[&str]) -> LabCmd {
        let argv = ["kante", "lab"].into_iter().chain(args.iter().copied());
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Lab(l) => l,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn up_has_defaults_and_takes_every_option() {
        let LabCmd::Up(a) = lab(&["up"]) else {
            panic!()
        };
        assert_eq!(
            (
                a.hosts,
                a.which.name.as_str(),
                a.subnet.as_str(),
                a.bridge_range.as_str()
            ),
            (3, "lab", "10.248.0.0/24", "10.249.0.0/16")
        );
        assert!(a.which.dir.is_none() && a.kanted.is_none());
        let LabCmd::Up(a) = lab(&[
            "up",
            "--hosts",
            "5",
            "--name",
            "t1",
            "--dir",
            "/tmp/l",
            "--subnet",
            "10.9.0.0/24",
            "--bridge-range",
            "10.8.0.0/16",
            "--kanted",
            "/opt/kanted",
        ]) else {
            panic!()
        };
        assert_eq!(a.hosts, 5);
        assert_eq!(a.which.dir.as_deref(), Some(std::path::Path::new("/tmp/l")));
        assert_eq!(
            a.kanted.as_deref(),
            Some(std::path::Path::new("/opt/kanted"))
        );
        assert!(Cli::try_parse_from(["kante", "lab", "up", "--hosts", "-1"]).is_err());
    }

    #[test]
    fn exec_passes_the_command_through() {
        let LabCmd::Exec {
            which,
            host,
            command,
        } = lab(&[
            "exec", "--name", "t1", "h1", "--", "kante", "list", "-f", "csv", "h3:",
        ])
        else {
            panic!()
        };
        assert_eq!((which.name.as_str(), host.as_str()), ("t1", "h1"));
        assert_eq!(command, ["kante", "list", "-f", "csv", "h3:"]);
        assert!(Cli::try_parse_from(["kante", "lab", "exec", "h1"]).is_err());
        let LabCmd::Down(w) = lab(&["down", "--name", "t1"]) else {
            panic!()
        };
        assert_eq!(w.name, "t1");
        assert!(matches!(lab(&["status"]), LabCmd::Status(_)));
    }
}
