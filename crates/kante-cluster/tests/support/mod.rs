//! Test support: a real etcd on free loopback ports with a temporary data
//! dir (killed on drop, restartable on the same dir), a TCP relay that
//! cuts one member off from it, and members connected to it.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kante_cluster::{EtcdConfig, EtcdState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A free loopback port (bound then released: etcd binds it next).
fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One etcd 3.4 member (`KANTE_ETCD`, else `etcd` on the PATH).
pub struct Etcd {
    dir: tempfile::TempDir,
    pub client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// With client TLS: the files etcd and its clients use.
    pub tls: Option<TlsFiles>,
    /// Its member name, and every member's `name=peer URL`.
    name: String,
    initial_cluster: String,
}

/// A CA, etcd's certificate for 127.0.0.1 and a client's, all PEM files.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    fn make(dir: &std::path::Path) -> TlsFiles {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
            KeyPair,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let leaf = |name: &str, purpose: ExtendedKeyUsagePurpose| {
            let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
            p.extended_key_usages = vec![purpose];
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf("127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf("member", ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        TlsFiles {
            ca: write("ca.crt", &ca.pem()),
            server_cert: write("server.crt", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.crt", &client_cert),
            client_key: write("client.key", &client_key),
        }
    }

    /// What a member is configured with.
    pub fn member(&self) -> kante_cluster::EtcdTls {
        kante_cluster::EtcdTls {
            ca: self.ca.clone(),
            cert: Some(self.client_cert.clone()),
            key: Some(self.client_key.clone()),
        }
    }

    fn client_options(&self) -> etcd_client::ConnectOptions {
        let read = |p: &PathBuf| std::fs::read(p).unwrap();
        etcd_client::ConnectOptions::new().with_tls(
            etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca)))
                .identity(etcd_client::Identity::from_pem(
                    read(&self.client_cert),
                    read(&self.client_key),
                )),
        )
    }
}

impl Etcd {
    pub async fn start() -> Etcd {
        Etcd::start_with(false).await
    }

    /// An etcd that serves clients over TLS only, and only clients with a
    /// certificate its CA signed.
    pub async fn start_tls() -> Etcd {
        Etcd::start_with(true).await
    }

    async fn start_with(tls: bool) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls.then(|| TlsFiles::make(dir.path()));
        let peer_port = free_port();
        let mut etcd = Etcd {
            dir,
            client_port: free_port(),
            peer_port,
            child: None,
            tls,
            name: "t".into(),
            initial_cluster: format!("t=http://127.0.0.1:{peer_port}"),
        };
        etcd.restart().await;
        etcd
    }

    /// An etcd cluster of `n` voting members (quorum: a majority).
    pub async fn start_cluster(n: usize) -> Vec<Etcd> {
        let peers: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let initial_cluster = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("e{i}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Etcd> = peers
            .iter()
            .enumerate()
            .map(|(i, &peer_port)| Etcd {
                dir: tempfile::tempdir().unwrap(),
                client_port: free_port(),
                peer_port,
                child: None,
                tls: None,
                name: format!("e{i}"),
                initial_cluster: initial_cluster.clone(),
            })
            .collect();
        // Each answers only once a quorum has formed: start all, then wait.
        for m in &mut members {
            m.spawn();
        }
        for m in &members {
            m.wait_ready().await;
        }
        members
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts etcd (again, on the same data dir and ports) and waits until
    /// it answers.
    pub async fn restart(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        let bin = std::env::var("KANTE_ETCD").unwrap_or_else(|_| "etcd".into());
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .unwrap();
        let mut cmd = Command::new(bin);
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", "kante-test"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server) must be installed");
        self.child = Some(child);
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answered = async {
                let options = self.tls.as_ref().map(TlsFiles::client_options);
                let mut c = etcd_client::Client::connect([self.endpoint()], options).await?;
                c.get("probe", None).await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), answered).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not start: {}",
                std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills etcd (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A client straight to etcd, for what members do not do (compaction).
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None)
            .await
            .unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster name no other test uses (tests share nothing but may share
/// an etcd).
pub fn cluster_name(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A member of `cluster` reaching etcd at `endpoint`, with a short
/// timeout (the tests bound failures by it).
pub fn config(endpoint: &str, cluster: &str, member: &str) -> EtcdConfig {
    let mut c = EtcdConfig::new(
        vec![endpoint.to_string()],
        cluster,
        member,
        &format!("10.0.0.{}:8443", member.len()),
    );
    c.timeout = Duration::from_secs(2);
    c
}

pub async fn member(endpoint: &str, cluster: &str, name: &str) -> EtcdState {
    EtcdState::connect(&config(endpoint, cluster, name))
        .await
        .unwrap()
}

/// Waits until `check` holds, polling, for at most `limit`; how long it
/// took.
pub async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP relay from a port of its own to etcd: a member that connects
/// through it is cut off by [`Relay::cut`] (every connection dropped, no
/// new one accepted) or [`Relay::freeze`] (connections stay open but
/// nothing passes: a link gone silent) while the others go on, and back
/// by [`Relay::restore`] or [`Relay::thaw`].
pub struct Relay {
    pub port: u16,
    target: SocketAddr,
    task: Option<JoinHandle<()>>,
    frozen: watch::Sender<bool>,
}

/// Copies one direction, holding what it read while the relay is frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Relay {
    pub async fn start(target_port: u16) -> Relay {
        let mut r = Relay {
            port: free_port(),
            target: SocketAddr::from(([127, 0, 0, 1], target_port)),
            task: None,
            frozen: watch::channel(false).0,
        };
        r.restore().await;
        r
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn restore(&mut self) {
        assert!(self.task.is_none());
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let target = self.target;
        let frozen = self.frozen.clone();
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let frozen = frozen.clone();
                conns.spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (in_r, in_w) = inbound.into_split();
                    let (out_r, out_w) = outbound.into_split();
                    tokio::join!(
                        pump(in_r, out_w, frozen.subscribe()),
                        pump(out_r, in_w, frozen.subscribe())
                    );
                });
            }
        }));
    }

    /// Drops the listener and every relayed connection (the JoinSet goes
    /// with the task).
    pub async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Lets nothing through, keeping every connection open.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
