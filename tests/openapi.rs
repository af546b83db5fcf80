//! schemathesis (PyPI, in `/opt/kante-schemathesis`: scripts/deps.sh)
//! against a live kanted over HTTPS with a trusted client certificate,
//! driven by `docs/openapi.json` (the document the code generates; a
//! kante-http test keeps them equal). Bounded (few examples per operation,
//! a 60 s budget: measured, every selected operation goes through both
//! phases within it, about 5,700 requests; schemathesis repeats fuzzing
//! until the budget is spent, so a larger one only repeats) to stay about
//! a minute of the suite; `docs/openapi.md`
//! says how to run a longer campaign. It checks that no request, however
//! malformed, gets a 5xx; that kanted is still up and answering
//! afterwards; and, from schemathesis's record of every request (HAR),
//! that a rejected request changed nothing: each collection (instances,
//! networks, profiles, pools, projects, images) that no accepted request
//! touched is exactly as it was, record for record, and every name that
//! appeared, went or changed is named by an accepted request.
//!
//! Left out of the run, because an accepted one would reach outside the
//! test's bounds (the network rule, host paths) or move the endpoint the
//! run talks to: `PUT`/`PATCH /1.0` (server config: the HTTPS address,
//! the trust store's password), `PUT /1.0/cluster` (clustering re-keys
//! the server), `POST /1.0/images` (fetches the URL the body names),
//! `POST /1.0/networks` (host bridges and addresses), `POST
//! /1.0/storage-pools` (host paths the body names); `DELETE`, `PUT` and
//! `PATCH /1.0/certificates/{fp}` (a unique prefix of the run's own
//! fingerprint names its certificate, so an accepted one removed or
//! restricted the run's trust and every later request was a 403: a run
//! that proved nothing past that point; `tests/remote_https.rs` removes and
//! edits certificates with lxc); and `/1.0/containers…`, the same handlers as
//! `/1.0/instances…`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kante_integration::{kante_ok, listen_https, prerequisite, run, Daemon};
use serde_json::Value;

const SCHEMATHESIS: &str = "/opt/kante-schemathesis/bin/schemathesis";

/// Operations left out (see the module docs), by their operationId.
const LEFT_OUT: &[&str] = &[
    "put_1_0",
    "patch_1_0",
    "put_1_0_cluster",
    "post_1_0_images",
    "post_1_0_networks",
    "post_1_0_storage_pools",
    "delete_1_0_certificates__fp_",
    "put_1_0_certificates__fp_",
    "patch_1_0_certificates__fp_",
];

/// The collections compared before and after, by their API path.
const COLLECTIONS: &[&str] = &[
    "/1.0/instances",
    "/1.0/networks",
    "/1.0/profiles",
    "/1.0/storage-pools",
    "/1.0/projects",
    "/1.0/images",
    "/1.0/certificates",
];

/// Collections whose records a unique prefix of their fingerprint names.
const FINGERPRINTED: &[&str] = &["/1.0/certificates", "/1.0/images"];

/// Every collection's records (`?recursion=1`), by name, rendered as JSON.
async fn snapshot(d: &Daemon) -> BTreeMap<&'static str, BTreeMap<String, String>> {
    let mut all = BTreeMap::new();
    for c in COLLECTIONS {
        let records: Vec<Value> = d
            .client
            .get_json(&format!("{c}?recursion=1"))
            .await
            .unwrap_or_else(|e| panic!("listing {c}: {e}"));
        let by_name = records
            .into_iter()
            // The host's own interfaces come and go with other programs.
            .filter(|r| *c != "/1.0/networks" || r["managed"] == true)
            .map(|r| {
                let name = r["fingerprint"]
                    .as_str()
                    .or_else(|| r["name"].as_str())
                    .unwrap_or_default()
                    .to_string();
                let mut r = r;
                // What changes by itself: the time of last use, the state.
                if let Some(o) = r.as_object_mut() {
                    o.remove("last_used_at");
                    o.remove("used_by");
                }
                (name, r.to_string())
            })
            .collect();
        all.insert(*c, by_name);
    }
    all
}

/// `%2F` and the like decoded (for names in request paths).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One request of the run as the HAR report has it.
struct Exchange {
    method: String,
    /// The URL's path, decoded.
    path: String,
    /// The body sent, if any.
    body: String,
    status: u16,
}

fn exchanges(har: &Value) -> Vec<Exchange> {
    har["log"]["entries"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let url = e["request"]["url"].as_str().unwrap_or_default();
                    let path = url
                        .split_once("://")
                        .map(|(_, rest)| rest)
                        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
                        .unwrap_or("/");
                    let path = path.split('?').next().unwrap_or_default();
                    Exchange {
                        method: e["request"]["method"].as_str().unwrap_or_default().into(),
                        path: percent_decode(path),
                        body: e["request"]["postData"]["text"]
                            .as_str()
                            .unwrap_or_default()
                            .into(),
                        status: e["response"]["status"].as_u64().unwrap_or_default() as u16,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the daemon runs no operation (a create accepted with 202
/// finishes, or fails and undoes itself, before the lists are compared).
async fn operations_settled(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ops: Value = d
            .client
            .get_json("/1.0/operations?recursion=1")
            .await
            .expect("listing operations");
        let running = ops
            .as_object()
            .and_then(|o| o.get("running"))
            .and_then(Value::as_array)
            .map(|r| {
                // Tasks; a token waits for its client, a websocket for its peer.
                r.iter().filter(|op| op["class"] == "task").count()
            })
            .unwrap_or(0);
        if running == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "operations still running after the run: {ops}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn schemathesis_finds_no_server_error_and_rejections_change_nothing() {
    if !prerequisite(
        Path::new(SCHEMATHESIS).exists(),
        "schemathesis in /opt/kante-schemathesis (scripts/deps.sh)",
    ) {
        return;
    }
    run(async {
        let d = Daemon::start().await;
        let port = listen_https(&d);
        let pair = kante_tls::KeyPair::generate(kante_tls::Role::Client, &["schemathesis".into()])
            .unwrap();
        let (crt, key) = (d.dir.join("st.crt"), d.dir.join("st.key"));
        std::fs::write(&crt, &pair.cert_pem).unwrap();
        std::fs::write(&key, &pair.key_pem).unwrap();
        d.client
            .post(
                "/1.0/certificates",
                &serde_json::json!({
                    "type": "client",
                    "name": "schemathesis",
                    "certificate": pair.cert_pem,
                }),
            )
            .await
            .expect("trusting the run's certificate");
        let before = snapshot(&d).await;

        let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let work = d.dir.join("schemathesis");
        std::fs::create_dir_all(&work).unwrap();
        let har = work.join("run.har");
        let mut cmd = Command::new(SCHEMATHESIS);
        cmd.current_dir(&work)
            .args(["run", doc])
            .args(["--url", &format!("https://127.0.0.1:{port}")])
            .args(["--checks", "not_a_server_error"])
            .args(["--phases", "coverage,fuzzing"])
            .args(["--max-examples", "6"])
            .args(["--max-time", "60"])
            .args(["--workers", "2"])
            .args(["--seed", "20"])
            .args(["--request-timeout", "30"])
            .args(["--generation-database", "none"])
            .args(["--tls-verify", "false"])
            .arg("--request-cert")
            .arg(&crt)
            .arg("--request-cert-key")
            .arg(&key)
            .args(["--exclude-path-regex", "^/1\\.0/containers"])
            .args(["--report", "har"])
            .arg("--report-har-path")
            .arg(&har)
            .args(["--no-color"])
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE");
        for id in LEFT_OUT {
            cmd.args(["--exclude-operation-id", id]);
        }
        let started = Instant::now();
        let out = cmd.output().expect("run schemathesis");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "schemathesis took {:?}:\n{stdout}\n{stderr}",
            started.elapsed()
        );
        assert!(
            out.status.success(),
            "schemathesis found failures ({}):\n{stdout}\n{stderr}\nkanted's log:\n{}",
            out.status,
            d.log_text()
        );

        // No crash: the same daemon still answers.
        assert!(
            Path::new(&format!("/proc/{}", d.pid())).exists(),
            "kanted died during the run:\n{}",
            d.log_text()
        );
        d.client
            .get("/1.0")
            .await
            .expect("kanted answers after the run");

        // What the run sent, and what was accepted.
        let har: Value = serde_json::from_slice(&std::fs::read(&har).expect("the HAR report"))
            .expect("the HAR report is JSON");
        let sent = exchanges(&har);
        assert!(sent.len() > 500, "only {} requests were sent", sent.len());
        let rejected = sent.iter().filter(|e| e.status >= 400).count();
        assert!(rejected > 100, "only {rejected} requests were rejected");
        assert!(
            sent.iter().all(|e| e.status < 500),
            "a 5xx escaped the check"
        );
        operations_settled(&d).await;
        let after = snapshot(&d).await;
        let mutating =
            |e: &&Exchange| matches!(e.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE");
        for c in COLLECTIONS {
            let accepted: Vec<&Exchange> = sent
                .iter()
                .filter(mutating)
                .filter(|e| (200..300).contains(&e.status))
                .filter(|e| e.path == *c || e.path.starts_with(&format!("{c}/")))
                .collect();
            let (b, a) = (&before[c], &after[c]);
            let changed: Vec<&String> = b
                .keys()
                .chain(a.keys())
                .filter(|n| b.get(*n) != a.get(*n))
                .collect();
            for name in changed {
                // Certificates and images are also named by a prefix of
                // their fingerprint, as in LXD (`DELETE /1.0/certificates/3`
                // deletes the one certificate whose fingerprint starts "3").
                let by_prefix = |e: &&&Exchange| {
                    FINGERPRINTED.contains(c)
                        && e.path
                            .strip_prefix(&format!("{c}/"))
                            .and_then(|rest| rest.split(['/', '?']).next())
                            .is_some_and(|seg| !seg.is_empty() && name.starts_with(seg))
                };
                let named = accepted.iter().any(|e| {
                    e.path.contains(name.as_str())
                        || e.body.contains(name.as_str())
                        || by_prefix(&e)
                });
                assert!(
                    named,
                    "{c}: {name:?} changed, but no accepted request names it\nbefore: {:?}\nafter: {:?}",
                    b.get(name),
                    a.get(name)
                );
            }
        }
        kante_ok(&d, &["config", "unset", "core.https_address"]);
        d.shutdown().await;
    });
}
