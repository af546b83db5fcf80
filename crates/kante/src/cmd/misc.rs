//! `kante version`, `kante wait-ready`, `kante operation …`, `kante monitor`.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
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

/// Polls `GET /1.0` until the daemon answers it: a socket that refuses
/// (none yet, or one a killed daemon left) or a daemon still opening its
/// state is retried, until `timeout` seconds have passed (0: for ever).
pub async fn wait_ready(c: &Client, timeout: u64) -> Result<i32> {
    const POLL: Duration = Duration::from_millis(100);
    let deadline = (timeout > 0).then(|| Instant::now() + Duration::from_secs(timeout));
    let mut last = "no answer".to_string();
    loop {
        let attempt = c.get("/1.0");
        let answer = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), attempt).await.ok(),
            None => Some(attempt.await),
        };
        match answer {
            Some(Ok(_)) => return Ok(0),
            Some(Err(e)) => last = e.to_string(),
            None => {}
        }
        if deadline.is_some_and(|d| Instant::now() + POLL >= d) {
            bail!("Daemon still not ready after {timeout}s timeout ({last})");
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn operation(c: &Client, cmd: OperationCmd) -> Result<i32> {
    match cmd {
        OperationCmd::List { format, .. } => {
            let mut ops: Vec<_> = c.operations_full().await?.into_values().flatten().collect();
            ops.sort_by_key(|a| a.created_at);
            match format {
                Format::Json => println!("{}", serde_json::to_string(&ops)?),
                Format::Yaml => print!("{}", to_yaml(&ops)?),
                fmt => {
                    // A cluster's members each run their own (as lxc shows).
                    let clustered = ops
                        .iter()
                        .any(|o| !o.location.is_empty() && o.location != "none");
                    let rows: Vec<Vec<String>> = ops
                        .iter()
                        .map(|o| {
                            let mut row = vec![
                                o.id.clone(),
                                format!("{:?}", o.class).to_uppercase(),
                                o.description.clone(),
                                o.status.to_uppercase(),
                                if o.may_cancel { "YES" } else { "NO" }.into(),
                                date_short(&o.created_at),
                            ];
                            if clustered {
                                row.push(o.location.clone());
                            }
                            row
                        })
                        .collect();
                    let mut header = vec![
                        "ID",
                        "TYPE",
                        "DESCRIPTION",
                        "STATUS",
                        "CANCELABLE",
                        "CREATED",
                    ];
                    if clustered {
                        header.push("LOCATION");
                    }
                    print!("{}", render(fmt, &header, &rows));
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
