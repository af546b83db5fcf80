//! Man pages from the command-line definition (`kante manpage DIR`, as
//! `lxc manpage`): `kante.1` and one page per subcommand, nested ones
//! included (`kante-network-create.1`), written by clap_mangen so they
//! never drift from `--help`.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// Writes every page into `dir` (made if missing); returns how many.
pub fn write_all(dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("Failed to create {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut count = 0;
    write_tree(&cmd, "kante", dir, &mut count)?;
    Ok(count)
}

/// The page of `cmd` (named `name`), then its subcommands' pages.
fn write_tree(cmd: &clap::Command, name: &str, dir: &Path, count: &mut usize) -> Result<()> {
    if cmd.is_hide_set() {
        return Ok(());
    }
    let page = cmd.clone().name(name.to_string());
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .section("1")
        .source(format!("kante {}", env!("CARGO_PKG_VERSION")))
        .manual("Kante")
        .render(&mut out)
        .context("Failed to render a man page")?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, out).with_context(|| format!("Failed to write {}", path.display()))?;
    *count += 1;
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        write_tree(sub, &format!("{name}-{}", sub.get_name()), dir, count)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_gets_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let n = write_all(dir.path()).unwrap();
        assert!(n > 50, "only {n} pages");
        let launch = std::fs::read_to_string(dir.path().join("kante-launch.1")).unwrap();
        assert!(launch.contains(".TH kante-launch 1"), "{launch}");
        assert!(launch.contains("\\-\\-wait"), "launch's page lists --wait");
        assert!(dir.path().join("kante-network-create.1").exists());
        assert!(dir.path().join("kante.1").exists());
    }
}
