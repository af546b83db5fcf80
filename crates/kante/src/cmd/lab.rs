//! `kante lab up|status|down|exec`: the arguments checked and handed to the
//! lab module (`crate::lab`), which does the work.

use anyhow::Result;

use crate::cli::lab::LabCmd;
use crate::lab;

pub async fn run(cmd: LabCmd) -> Result<i32> {
    match cmd {
        LabCmd::Up(args) => {
            let spec = lab::Spec::from_args(&args)?;
            lab::require_root()?;
            lab::up::up(&spec).await?;
            Ok(0)
        }
        LabCmd::Status(which) => {
            let (name, dir) = lab::which(&which)?;
            print!("{}", lab::status::status(&name, &dir).await?);
            Ok(0)
        }
        LabCmd::Down(which) => {
            let (name, dir) = lab::which(&which)?;
            lab::require_root()?;
            lab::down::down(&name, &dir).await?;
            Ok(0)
        }
        LabCmd::Exec {
            which,
            host,
            command,
        } => {
            let (name, dir) = lab::which(&which)?;
            lab::require_root()?;
            lab::exec::exec(&name, &dir, &host, &command)
        }
    }
}
