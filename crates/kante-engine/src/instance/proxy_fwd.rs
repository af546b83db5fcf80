//! Proxy device forwarding, bounded so that no flood of clients can starve
//! the daemon (audit F8: one blocking thread per connection took kanted
//! from 5 to 1027 threads and stalled every other blocking task).
//!
//! * One thread per device lives in the instance's network namespace and
//!   only *creates* sockets there (non-blocking, close-on-exec): a socket
//!   keeps the namespace it was made in, so the connect itself runs on
//!   tokio, with [`CONNECT_TIMEOUT`].
//! * At most [`MAX_CONNECTIONS`] TCP connections (or UDP flows) per device,
//!   all its ports together. At the cap a TCP listener stops accepting, so
//!   further clients wait in the kernel's backlog at no cost to the daemon;
//!   a datagram that would start a new UDP flow is dropped.
//! * A connection that moves no byte either way for [`IDLE_TIMEOUT`] is
//!   closed (a UDP flow after [`UDP_IDLE_TIMEOUT`]); a client whose
//!   connection is reset while it is still being made frees its slot at once.
//! * `accept`/`recv` errors (`EMFILE`, …) back off from 5 ms to 1 s.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket, UnixListener, UnixStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Concurrent TCP connections, or UDP flows, of one proxy device. LXD has
/// no key for this (its forkproxy helper has no cap), so it is fixed.
pub const MAX_CONNECTIONS: usize = 256;
/// How long a connection into the instance may take to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A TCP connection that moves no byte either way for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// A UDP flow (one client address) with no datagram either way for this long ends.
pub const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const UDP_BUFFER: usize = 64 * 1024;

type Job = Box<dyn FnOnce() + Send>;

/// A thread that joined an instance's network namespace and runs socket
/// constructors there. It ends when the last [`Device`] clone is dropped.
struct NetnsThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl NetnsThread {
    /// `pid`'s namespace; `None` stays in the daemon's (unit tests).
    async fn spawn(pid: Option<i32>) -> io::Result<NetnsThread> {
        let ns = match pid {
            Some(pid) => Some(std::fs::File::open(format!("/proc/{pid}/ns/net"))?),
            None => None,
        };
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("proxy-netns".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let joined = match &ns {
                    Some(ns) => kante_network::netns::enter(ns),
                    None => Ok(()),
                };
                drop(ns);
                let ok = joined.is_ok();
                let _ = ready_tx.send(joined);
                if ok {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                }
            })?;
        ready_rx
            .await
            .map_err(|_| io::Error::other("the proxy's namespace thread died"))??;
        Ok(NetnsThread { jobs })
    }

    /// Runs `make` in the namespace. It must not block: it only makes sockets.
    async fn run<T: Send + 'static>(
        &self,
        make: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let gone = || io::Error::other("the proxy's namespace thread is gone");
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(make());
            }))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// What the listeners of one proxy device share.
pub struct Device {
    netns: NetnsThread,
    slots: Arc<Semaphore>,
    /// The instance's init: its root is where unix socket paths resolve
    /// (`None`: the host's, in unit tests).
    pid: Option<i32>,
}

impl Device {
    /// Enters the network namespace of `pid` (on the device's own thread).
    pub async fn open(pid: i32) -> io::Result<Arc<Device>> {
        Device::with(Some(pid), MAX_CONNECTIONS).await
    }

    async fn with(pid: Option<i32>, cap: usize) -> io::Result<Arc<Device>> {
        Ok(Arc::new(Device {
            netns: NetnsThread::spawn(pid).await?,
            slots: Arc::new(Semaphore::new(cap)),
            pid,
        }))
    }
}

/// A host listener of a stream proxy.
pub enum StreamListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Where a proxy connects inside the instance.
#[derive(Debug, Clone)]
pub enum Target {
    Inet(SocketAddr),
    /// A unix socket's path, resolved inside the instance's root.
    Unix(PathBuf),
}

/// One accepted or made connection.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Waits longer after each consecutive error, so `EMFILE` does not spin.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    async fn after(&mut self, what: &str, addr: Option<SocketAddr>, e: &io::Error) {
        tracing::warn!(
            ?addr,
            "proxy {what} error: {e} (retrying in {:?})",
            self.next
        );
        tokio::time::sleep(self.next).await;
        self.grow();
    }

    /// The next wait: twice this one, up to the ceiling.
    fn grow(&mut self) {
        self.next = (self.next * 2).min(BACKOFF_MAX);
    }
}

/// When a connection or flow last moved a byte.
pub(super) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    pub(super) async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Accepts on `listener` (TCP or unix) and forwards each connection to
/// `target` (TCP or unix) in the instance.
pub async fn serve_stream(listener: StreamListener, target: Target, dev: Arc<Device>) {
    let addr = match &listener {
        StreamListener::Tcp(l) => l.local_addr().ok(),
        StreamListener::Unix(_) => None,
    };
    // Aborting this task (the device goes away) drops the set, which
    // aborts every connection it still forwards.
    let mut conns = JoinSet::new();
    let mut backoff = Backoff::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok(slot) = dev.slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = match &listener {
            StreamListener::Tcp(l) => l.accept().await.map(|(c, _)| Conn::Tcp(c)),
            StreamListener::Unix(l) => l.accept().await.map(|(c, _)| Conn::Unix(c)),
        };
        match accepted {
            Ok(client) => {
                backoff.reset();
                conns.spawn(forward_stream(client, target.clone(), dev.clone(), slot));
            }
            Err(e) => {
                drop(slot);
                backoff.after("accept", addr, &e).await;
            }
        }
    }
}

/// Connects to `target` inside the instance: a TCP socket made in its
/// network namespace, or the unix socket at a path looked up inside its
/// root (symlinks and `..` cannot lead out) and reached through the
/// looked-up file's descriptor.
async fn connect(target: &Target, dev: &Device) -> io::Result<Conn> {
    match target {
        Target::Inet(addr) => {
            let v4 = addr.is_ipv4();
            let sock = dev
                .netns
                .run(move || {
                    if v4 {
                        TcpSocket::new_v4()
                    } else {
                        TcpSocket::new_v6()
                    }
                })
                .await?;
            Ok(Conn::Tcp(sock.connect(*addr).await?))
        }
        Target::Unix(path) => {
            let root = match dev.pid {
                Some(pid) => PathBuf::from(format!("/proc/{pid}/root")),
                None => PathBuf::from("/"),
            };
            let fd = kante_runtime::rootdir::RootDir::open(&root)?.open_path(path)?;
            let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
            let s = UnixStream::connect(&via).await;
            drop(fd);
            Ok(Conn::Unix(s?))
        }
    }
}

async fn forward_stream(
    client: Conn,
    target: Target,
    dev: Arc<Device>,
    _slot: OwnedSemaphorePermit,
) {
    let made = async {
        match tokio::time::timeout(CONNECT_TIMEOUT, connect(&target, &dev)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
        }
    };
    let hangup = async {
        match &client {
            Conn::Tcp(c) => hung_up(c).await,
            // Nothing to peek at on a unix stream: wait for the connect.
            Conn::Unix(_) => std::future::pending().await,
        }
    };
    let upstream = tokio::select! {
        r = made => match r {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(?target, "proxy connect failed: {e}");
                return;
            }
        },
        () = hangup => return,
    };
    drop(dev);
    use super::proxy_splice::pump;
    match (client, upstream) {
        (Conn::Tcp(c), Conn::Tcp(u)) => {
            let _ = c.set_nodelay(true);
            let _ = u.set_nodelay(true);
            pump(&c, &u, IDLE_TIMEOUT).await
        }
        (Conn::Tcp(c), Conn::Unix(u)) => {
            let _ = c.set_nodelay(true);
            pump(&c, &u, IDLE_TIMEOUT).await
        }
        (Conn::Unix(c), Conn::Tcp(u)) => {
            let _ = u.set_nodelay(true);
            pump(&c, &u, IDLE_TIMEOUT).await
        }
        (Conn::Unix(c), Conn::Unix(u)) => pump(&c, &u, IDLE_TIMEOUT).await,
    }
}

/// Resolves if the client's connection fails (a reset) before it sent
/// anything. An end of stream is not enough: a client may half-close at
/// once and still wait for the service's first words, so it keeps its
/// connection attempt; data, likewise, waits for the connection.
async fn hung_up(s: &TcpStream) {
    let mut b = [0u8; 1];
    if s.peek(&mut b).await.is_ok() {
        std::future::pending::<()>().await;
    }
}

/// One client address's flow: a connected socket inside the instance.
struct Flow {
    sock: UdpSocket,
    act: Activity,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>>;

/// Relays datagrams: one socket inside the instance per client address.
pub async fn serve_udp(listener: Arc<UdpSocket>, target: SocketAddr, dev: Arc<Device>) {
    let addr = listener.local_addr().ok();
    let flows: Flows = Default::default();
    let mut replies = JoinSet::new();
    let mut backoff = Backoff::new();
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        while replies.try_join_next().is_some() {}
        let (n, client) = match listener.recv_from(&mut buf).await {
            Ok(got) => {
                backoff.reset();
                got
            }
            Err(e) => {
                backoff.after("receive", addr, &e).await;
                continue;
            }
        };
        let known = crate::lock(&flows).get(&client).cloned();
        let flow = match known {
            Some(f) => f,
            None => {
                // No slot: drop the datagram, as a full queue would.
                let Ok(slot) = dev.slots.clone().try_acquire_owned() else {
                    continue;
                };
                let sock = match udp_socket_in(&dev, target).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%target, "proxy UDP socket: {e}");
                        continue;
                    }
                };
                let flow = Arc::new(Flow {
                    sock,
                    act: Activity::new(),
                });
                crate::lock(&flows).insert(client, flow.clone());
                replies.spawn(relay_replies(
                    listener.clone(),
                    client,
                    flow.clone(),
                    flows.clone(),
                    slot,
                ));
                flow
            }
        };
        flow.act.touch();
        let _ = flow.sock.send(&buf[..n]).await;
    }
}

async fn udp_socket_in(dev: &Device, target: SocketAddr) -> io::Result<UdpSocket> {
    let sock = dev
        .netns
        .run(move || {
            let any: SocketAddr = if target.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let s = std::net::UdpSocket::bind(any)?;
            s.connect(target)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .await?;
    UdpSocket::from_std(sock)
}

/// Sends the instance's replies back to `client` until the flow is idle.
async fn relay_replies(
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    flow: Arc<Flow>,
    flows: Flows,
    _slot: OwnedSemaphorePermit,
) {
    let relay = async {
        let mut buf = vec![0u8; UDP_BUFFER];
        while let Ok(m) = flow.sock.recv(&mut buf).await {
            flow.act.touch();
            if listener.send_to(&buf[..m], client).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = relay => {}
        () = flow.act.idle_for(UDP_IDLE_TIMEOUT) => {}
    }
    crate::lock(&flows).remove(&client);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// TCP to TCP, as most devices are.
    async fn serve_tcp(listener: TcpListener, target: SocketAddr, dev: Arc<Device>) {
        serve_stream(StreamListener::Tcp(listener), Target::Inet(target), dev).await
    }

    /// Hang detection only: no test waits on this unless something is stuck.
    const HANG: Duration = Duration::from_secs(20);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_the_cap_wait_for_a_slot() {
        use std::sync::atomic::AtomicUsize;
        // The "instance": counts its open connections, keeps the highest
        // count, and closes each one when its client has.
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = server.local_addr().unwrap();
        let (open, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        let (o, m) = (open.clone(), most.clone());
        let srv = tokio::spawn(async move {
            loop {
                let (mut c, _) = server.accept().await.unwrap();
                let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                accepted_tx.send(()).unwrap();
                let o = o.clone();
                tokio::spawn(async move {
                    let mut sink = Vec::new();
                    let _ = c.read_to_end(&mut sink).await;
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let paddr = proxy.local_addr().unwrap();
        let dev = Device::with(None, 2).await.unwrap();
        let serve = tokio::spawn(serve_tcp(proxy, target, dev));
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(TcpStream::connect(paddr).await.unwrap());
        }
        for _ in 0..2 {
            tokio::time::timeout(HANG, accepted.recv()).await.unwrap();
        }
        // Each client that leaves lets one more through, never more than two at once.
        for _ in 0..2 {
            drop(clients.remove(0));
            tokio::time::timeout(HANG, accepted.recv()).await.unwrap();
        }
        drop(clients);
        assert_eq!(most.load(Ordering::SeqCst), 2);
        serve.abort();
        srv.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_half_closes_at_once_still_gets_the_banner() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = server.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let (mut c, _) = server.accept().await.unwrap();
            c.write_all(b"220 hello").await.unwrap();
        });
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let paddr = proxy.local_addr().unwrap();
        let serve = tokio::spawn(serve_tcp(
            proxy,
            target,
            Device::with(None, 4).await.unwrap(),
        ));
        let mut c = TcpStream::connect(paddr).await.unwrap();
        c.shutdown().await.unwrap();
        let mut banner = String::new();
        tokio::time::timeout(HANG, c.read_to_string(&mut banner))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(banner, "220 hello");
        srv.await.unwrap();
        serve.abort();
    }

    #[tokio::test]
    async fn backoff_grows_to_its_ceiling_and_resets() {
        let mut b = Backoff::new();
        let e = io::Error::from(kante_runtime::sys::Errno::TooManyFiles);
        // One real wait: the shortest, then twice as long.
        let t = std::time::Instant::now();
        b.after("accept", None, &e).await;
        assert!(t.elapsed() >= BACKOFF_MIN);
        assert_eq!(b.next, BACKOFF_MIN * 2);
        for _ in 0..12 {
            b.grow();
        }
        assert_eq!(b.next, BACKOFF_MAX);
        b.reset();
        assert_eq!(b.next, BACKOFF_MIN);
    }
}
