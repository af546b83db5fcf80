//! Times `n` exec round trips of `true` and splits each into its
//! client-visible phases: the POST that creates the operation, the four
//! websockets (control, 0, 1, 2), then the wait until the operation is final.
//! Also a steady exec load for profiling the daemon under perf or strace.
//! `exec_phases <socket> <instance> [n]`.

use std::time::Instant;

use futures_util::StreamExt;
use kante_api::exec::ExecPost;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: exec_phases <socket> <instance> [n]"
    );
    let n: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let client = kante_client::Client::with_socket(&args[1]);
    let mut phases: [Vec<f64>; 4] = Default::default();
    for _ in 0..n {
        let post = ExecPost {
            command: vec!["true".into()],
            ..Default::default()
        };
        let t0 = Instant::now();
        let op = client.exec_start(&args[2], post).await?;
        let t1 = Instant::now();
        let fds = op.metadata["fds"].clone();
        let mut sockets = Vec::new();
        for fd in ["control", "0", "1", "2"] {
            let secret = fds[fd].as_str().unwrap_or_default().to_string();
            sockets.push(client.operation_websocket(&op.id, &secret).await?);
        }
        let t2 = Instant::now();
        // Drain 1 and 2 until the server closes them, then wait for the result.
        for ws in sockets.iter_mut().skip(2) {
            while let Some(Ok(_)) = ws.next().await {}
        }
        let done = client.wait_operation(&op.id, None).await?;
        let t3 = Instant::now();
        anyhow::ensure!(done.status == "Success", "exec: {}", done.status);
        for (v, d) in phases.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t3 - t0]) {
            v.push(d.as_secs_f64() * 1e3);
        }
    }
    for (name, v) in ["POST exec", "4 websockets", "output + wait", "total"]
        .iter()
        .zip(phases.iter_mut())
    {
        v.sort_by(f64::total_cmp);
        println!(
            "{name:>14}: median {:.2} ms (min {:.2}, max {:.2})",
            v[n / 2],
            v[0],
            v[n - 1]
        );
    }
    Ok(())
}
