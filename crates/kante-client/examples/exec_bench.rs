//! Measures `exec_capture` round trips: `exec_bench <instance> [count]`.

use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kante_client::ClientError> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "c1".into());
    let count: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let client = kante_client::Client::local();
    client.exec_capture(&name, &["true"], &[], None).await?;
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..count {
        let t = Instant::now();
        let out = client.exec_capture(&name, &["true"], &[], None).await?;
        times.push(t.elapsed());
        assert_eq!(out.code, 0);
    }
    times.sort();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    println!(
        "exec_capture `true` x{count}: p50 {:?}  p90 {:?}  max {:?}",
        pct(50),
        pct(90),
        times[times.len() - 1]
    );
    Ok(())
}
