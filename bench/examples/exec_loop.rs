//! Times `n` exec round trips of `true` in one instance (for profiling the
//! daemon's exec path under perf or strace): `exec_loop <socket> <instance> [n]`.

use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 3, "usage: exec_loop <socket> <instance> [n]");
    let n: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(200);
    let client = kante_client::Client::with_socket(&args[1]);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let o = client.exec_capture(&args[2], &["true"], &[], None).await?;
        anyhow::ensure!(o.code == 0, "exec true exited {}", o.code);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{n} execs: min {:.2} ms, median {:.2} ms, max {:.2} ms",
        times[0],
        times[n / 2],
        times[n - 1]
    );
    Ok(())
}
