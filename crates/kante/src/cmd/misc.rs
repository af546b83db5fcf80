//! `kante version`, `kante operation …`, `kante monitor`.

use anyhow::Result;
use kante_api::server::Server;
use kante_client::Client;

use super::to_yaml;
use crate::cli::OperationCmd;
use crate::format::date_short;
use crate::table::{render, Format};

pub async fn version(c: &Client) -> Result<i32> {
    println!("Client version: {}", env!("CARGO_PKG_VERSION"));
    let server = match c.get_json::<Server>("/1.0").await {
        Ok(s) => s.environment.server_version,
        Err(_) => "unreachable".into(),
    };
    println!("Server version: {server}");
    Ok(0)
}

pub async fn operation(c: &Client, cmd: OperationCmd) -> Result<i32> {
    match cmd {
        OperationCmd::List { format } => {
            let mut ops: Vec<_> = c.operations_full().await?.into_values().flatten().collect();
            ops.sort_by_key(|a| a.created_at);
            match format {
                Format::Json => println!("{}", serde_json::to_string(&ops)?),
                Format::Yaml => print!("{}", to_yaml(&ops)?),
                fmt => {
                    let rows: Vec<Vec<String>> = ops
                        .iter()
                        .map(|o| {
                            vec![
                                o.id.clone(),
                                format!("{:?}", o.class).to_uppercase(),
                                o.description.clone(),
                                o.status.to_uppercase(),
                                if o.may_cancel { "YES" } else { "NO" }.into(),
                                date_short(&o.created_at),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        render(
                            fmt,
                            &[
                                "ID",
                                "TYPE",
                                "DESCRIPTION",
                                "STATUS",
                                "CANCELABLE",
                                "CREATED"
                            ],
                            &rows
                        )
                    );
                }
            }
        }
        OperationCmd::Show { id } => print!("{}", to_yaml(&c.get_operation(&id).await?)?),
        OperationCmd::Delete { id } => c.cancel_operation(&id).await?,
    }
    Ok(0)
}

pub async fn monitor(c: &Client, types: &[String], format: Format) -> Result<i32> {
    let mut events = c.events(&types.join(",")).await?;
    while let Some(ev) = events.next().await {
        let ev = ev?;
        match format {
            Format::Json => println!("{}", serde_json::to_string(&ev)?),
            _ => println!("{}", to_yaml(&ev)?),
        }
    }
    Ok(0)
}
