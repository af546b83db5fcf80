//! `kante`: the command-line client of the Kante daemon (lxc's verbs).

mod build;
mod cli;
mod cmd;
mod complete;
mod format;
mod lab;
mod manpage;
mod remote;
mod table;
mod terminal;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    // A shell's completion script calling back: answer and exit.
    complete::answer_if_asked();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                };
            }
            eprintln!("Error: {}", clap_message(&e));
            return ExitCode::from(1);
        }
    };
    // Commands that print what the CLI itself knows: no daemon, no runtime.
    match &cli.command {
        Command::Completion { shell, completer } => {
            return local_result(completion(shell, completer.as_deref()));
        }
        Command::Manpage { dir } => {
            return local_result(manpage::write_all(dir).map(|n| {
                eprintln!("{n} man pages written to {}", dir.display());
            }));
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Blocking stdin readers of exec must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("Error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// `kante completion SHELL`: the script calls back this program (its
/// absolute path), or `completer` when given (a package's `/usr/bin/kante`).
fn completion(shell: &str, completer: Option<&str>) -> anyhow::Result<()> {
    let me = match completer {
        Some(c) => c.to_string(),
        None => std::env::current_exe()?.to_string_lossy().into_owned(),
    };
    complete::registration(shell, &me)
}

/// The exit of a command that ran without a daemon.
fn local_result(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments");
    first.trim_start_matches("error: ").trim().to_string()
}

/// The error and its causes on one line, skipping causes whose text the
/// outer message already shows.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace(['\n', '\r'], " ").trim().to_string()
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let mut command = cli.command;
    if let Command::Remote(r) = command {
        return cmd::remote::run(r).await;
    }
    if let Command::Lab(l) = command {
        return cmd::lab::run(l).await;
    }
    if let Command::Apply(a) = command {
        return cmd::apply::run(a).await;
    }
    if let Command::Site(s) = command {
        return cmd::apply::site(s).await;
    }
    if let Command::Top(t) = command {
        return cmd::top::run(t).await;
    }
    // The one place the client is made: the remote the arguments name
    // (split off them here), else the default one.
    let remotes = remote::Config::load()?;
    if let Some(cross) = remote::route::cross(&remotes, &command)? {
        return cmd::migrate::run(&remotes, cmd::migrate::Request::new(cross, command)).await;
    }
    if let Some(cross) = remote::route::volume_cross(&remotes, &command)? {
        return cmd::volume_migrate::run(&remotes, cross, command).await;
    }
    let target = remote::route::route(&remotes, &mut command)?;
    if let Command::Image(cli::ImageCmd::List {
        filters,
        format,
        columns,
    }) = &command
    {
        if remotes
            .remotes
            .get(&target)
            .is_some_and(|r| r.protocol == "simplestreams")
        {
            return cmd::image_streams::list(&remotes, &target, filters, columns, *format).await;
        }
    }
    let client = remote::connect::client(&remotes, &target)?;
    let c = &client;
    match command {
        Command::Launch(args) => cmd::lifecycle::launch(c, args).await,
        Command::Init(args) if args.interactive => {
            let stdin = std::io::stdin();
            let (yaml, print) =
                cmd::questions::Asker::new(stdin.lock(), std::io::stdout()).preseed()?;
            kante_site::preseed::apply(c, &yaml).await?;
            if print {
                print!("{yaml}");
            }
            Ok(0)
        }
        Command::Init(args) if args.preseed => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
            kante_site::preseed::apply(c, &text).await.map(|_| 0)
        }
        Command::Init(args) if args.auto => {
            cmd::host::init_auto(c, &args.network_name).await.map(|_| 0)
        }
        Command::Init(args) => cmd::lifecycle::init(c, args.create).await.map(|_| 0),
        Command::Start {
            names,
            all,
            console,
            ..
        } => {
            cmd::console::check_single(console.as_deref(), all, &names)?;
            let names = if all {
                cmd::lifecycle::all_instances(c, false).await?
            } else {
                names
            };
            let code = cmd::lifecycle::start(c, &names).await?;
            match console {
                Some(_) => cmd::console::attach(c, &names[0]).await,
                None => Ok(code),
            }
        }
        Command::Stop {
            names,
            all,
            force,
            timeout,
            stateful,
            console,
        } => {
            cmd::console::check_single(console.as_deref(), all, &names)?;
            let names = if all {
                cmd::lifecycle::all_instances(c, true).await?
            } else {
                names
            };
            if console.is_some() {
                return cmd::console::stop_attached(c, &names[0], force, timeout, stateful).await;
            }
            cmd::lifecycle::stop(c, &names, force, timeout, stateful).await
        }
        Command::Restart {
            names,
            all,
            force,
            timeout,
            console,
        } => {
            cmd::console::check_single(console.as_deref(), all, &names)?;
            let names = if all {
                cmd::lifecycle::all_instances(c, true).await?
            } else {
                names
            };
            let code = cmd::lifecycle::restart(c, &names, force, timeout).await?;
            match console {
                Some(_) => cmd::console::attach(c, &names[0]).await,
                None => Ok(code),
            }
        }
        Command::Pause { names } => cmd::lifecycle::pause(c, &names).await,
        Command::Delete {
            names,
            force,
            interactive,
        } => cmd::lifecycle::delete(c, &names, force, interactive).await,
        Command::Rename { name, new_name } => cmd::snapshot::rename(c, &name, &new_name).await,
        Command::Move(args) => cmd::snapshot::move_(c, args).await,
        Command::Copy(args) => cmd::copy::run(c, args).await,
        Command::Snapshot {
            instance,
            snapshot,
            reuse,
            no_expiry,
            stateful,
        } => {
            let snap = snapshot.as_deref();
            cmd::snapshot::snapshot(c, &instance, snap, reuse, stateful, no_expiry).await
        }
        Command::Restore {
            instance,
            snapshot,
            stateful,
        } => cmd::snapshot::restore(c, &instance, &snapshot, stateful).await,
        Command::Export(args) => cmd::export::export(c, args).await,
        Command::Import(args) => cmd::export::import(c, args).await,
        Command::Publish(args) => cmd::publish::run(c, args).await,
        Command::List(args) => cmd::list::run(c, args).await,
        Command::Info {
            name,
            show_log,
            resources,
        } => match name {
            Some(name) => cmd::info::info(c, &name, show_log).await,
            None => cmd::server_info::server_info(c, resources).await,
        },
        Command::Console {
            name,
            show_log,
            kind,
        } => cmd::console::run(c, &name, show_log, &kind).await,
        Command::Exec(args) => cmd::exec::run(c, args).await,
        Command::File(f) => cmd::file::run(c, f).await,
        Command::Image(i) => cmd::image::run(c, i).await,
        Command::Config(cfg) => cmd::config::run(c, cfg).await,
        Command::Network(n) => cmd::network::run(c, n).await,
        Command::Storage(s) => cmd::storage::run(c, s).await,
        Command::Profile(p) => cmd::profile::run(c, p).await,
        Command::Cluster(cl) => cmd::cluster::run(c, cl).await,
        Command::Service(s) => cmd::cluster::service(c, s).await,
        Command::Remote(_)
        | Command::Lab(_)
        | Command::Apply(_)
        | Command::Site(_)
        | Command::Top(_)
        | Command::Completion { .. }
        | Command::Manpage { .. } => {
            unreachable!("handled above")
        }
        Command::Version { .. } => cmd::misc::version(c).await,
        Command::WaitReady { timeout } => cmd::misc::wait_ready(c, timeout).await,
        Command::Operation(op) => cmd::misc::operation(c, op).await,
        Command::Monitor { types, format, .. } => cmd::misc::monitor(c, &types, format).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_fit_on_one_line() {
        let e = anyhow::anyhow!("disk full\nreally").context("Failed to push /a");
        assert_eq!(one_line(&e), "Failed to push /a: disk full really");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(kante_client::ClientError::Io(io));
        assert_eq!(one_line(&e), "gone");
    }

    #[test]
    fn clap_errors_are_one_line() {
        let e = Cli::try_parse_from(["kante", "nosuch"]).unwrap_err();
        let m = clap_message(&e);
        assert!(m.starts_with("unrecognized subcommand 'nosuch'"), "{m}");
    }
}
