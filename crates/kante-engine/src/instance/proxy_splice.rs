//! A proxy's stream copy (TCP or unix, either side) without the bytes
//! passing through the daemon's memory: each direction is `splice(2)`
//! from one socket into a pipe and from the pipe into the other socket,
//! driven by tokio's readiness (the syscalls are kante-runtime's). Same
//! semantics as the generic pump: an end of stream is passed on as a
//! shutdown of the other side's writing while the other direction goes
//! on; it ends when both directions ended, either side failed, or nothing
//! moved for the idle timeout.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

use kante_runtime::sys;

use super::proxy_fwd::Activity;

/// Each direction's pipe (the kernel's default is 64 KiB).
const PIPE_SIZE: usize = 1 << 20;

/// A connected stream socket tokio drives: what splicing needs of it.
pub(super) trait SpliceEnd: AsFd + Sync {
    /// Waits until the socket may be ready for `interest`.
    fn wait(&self, interest: Interest) -> impl Future<Output = io::Result<()>> + Send;
    /// Runs a non-blocking call, clearing readiness on `WouldBlock`.
    fn attempt<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

macro_rules! splice_end {
    ($t:ty) => {
        impl SpliceEnd for $t {
            async fn wait(&self, interest: Interest) -> io::Result<()> {
                self.ready(interest).await.map(|_| ())
            }

            fn attempt<R>(
                &self,
                interest: Interest,
                f: impl FnOnce() -> io::Result<R>,
            ) -> io::Result<R> {
                self.try_io(interest, f)
            }
        }
    };
}

splice_end!(TcpStream);
splice_end!(UnixStream);

/// Copies both ways between two connections by splice; falls back to
/// nothing else: a failure to make the pipes ends the connection.
pub(super) async fn pump<A: SpliceEnd, B: SpliceEnd>(a: &A, b: &B, idle: Duration) {
    let act = Activity::new();
    let there = one_way(a, b, &act);
    let back = one_way(b, a, &act);
    let both = async {
        // A failure either way ends both (the connection is broken).
        let _ = tokio::try_join!(there, back);
    };
    tokio::select! {
        () = both => {}
        () = act.idle_for(idle) => tracing::debug!("proxy connection idle for {idle:?}: closed"),
    }
}

/// Moves `from`'s stream into `to` until its end, then shuts `to`'s
/// writing down.
async fn one_way<F: SpliceEnd, T: SpliceEnd>(from: &F, to: &T, act: &Activity) -> io::Result<()> {
    let (pr, pw) = sys::splice_pipe(PIPE_SIZE)?;
    // Bytes in the pipe, not yet in `to`.
    let mut held = 0usize;
    let mut ended = false;
    loop {
        if held == 0 && ended {
            return sys::shutdown_write(to.as_fd());
        }
        if held == 0 {
            // Fill the pipe from the socket.
            from.wait(Interest::READABLE).await?;
            match from.attempt(Interest::READABLE, || {
                sys::splice(from.as_fd(), pw.as_fd(), PIPE_SIZE)
            }) {
                Ok(0) => ended = true,
                Ok(n) => {
                    held += n;
                    act.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        // Drain the pipe into the other socket.
        to.wait(Interest::WRITABLE).await?;
        match to.attempt(Interest::WRITABLE, || {
            sys::splice(pr.as_fd(), to.as_fd(), held)
        }) {
            Ok(n) => {
                held -= n;
                act.touch();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of loopback TCP streams.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    const HANG: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_connection_that_moves_nothing_is_closed() {
        let (mut client, a) = pair().await;
        let (b, mut server) = pair().await;
        // A short idle timeout in real time (wide enough for a loaded
        // machine to pass the ping and pong inside it).
        let idle = Duration::from_secs(2);
        let started = std::time::Instant::now();
        let pump = tokio::spawn(async move { pump(&a, &b, idle).await });
        // Bytes move both ways.
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        server.write_all(b"pong").await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        // Then nothing: the idle timeout passes and the pump ends,
        // closing both sides (the peers read end-of-stream).
        tokio::time::timeout(HANG, pump).await.unwrap().unwrap();
        assert!(started.elapsed() >= idle, "closed only once idle");
        assert_eq!(client.read(&mut got).await.unwrap(), 0);
        assert_eq!(server.read(&mut got).await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_both_ways_and_a_half_close_carry_every_byte() {
        // client <-> (a | pump | b) <-> server
        let (mut client, a) = pair().await;
        let (b, mut server) = pair().await;
        let pump = tokio::spawn(async move { pump(&a, &b, HANG).await });
        let up: Vec<u8> = (0..(8u32 << 20))
            .map(|i| (i * 7 + i / 4099) as u8)
            .collect();
        let down: Vec<u8> = (0..(3u32 << 20))
            .map(|i| (i * 13 + i / 511) as u8)
            .collect();
        let (up2, down2) = (up.clone(), down.clone());
        // The client sends everything and half-closes; the server reads to
        // the end, then answers and closes.
        let cl = tokio::spawn(async move {
            let (mut r, mut w) = client.split();
            let send = async {
                w.write_all(&up2).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let recv = r.read_to_end(&mut got);
            let ((), n) = tokio::join!(send, recv);
            n.unwrap();
            got
        });
        let mut req = Vec::new();
        tokio::time::timeout(HANG, server.read_to_end(&mut req))
            .await
            .unwrap()
            .unwrap();
        assert!(
            req == up,
            "every byte up, in order ({} of {})",
            req.len(),
            up.len()
        );
        server.write_all(&down2).await.unwrap();
        drop(server);
        let got = tokio::time::timeout(HANG, cl).await.unwrap().unwrap();
        assert!(
            got == down,
            "every byte down ({} of {})",
            got.len(),
            down.len()
        );
        tokio::time::timeout(HANG, pump).await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_exchange_is_not_held_back() {
        let (mut client, a) = pair().await;
        let (b, mut server) = pair().await;
        let pump = tokio::spawn(async move { pump(&a, &b, HANG).await });
        for round in 0..100u8 {
            client.write_all(&[round]).await.unwrap();
            let mut one = [0u8; 1];
            tokio::time::timeout(HANG, server.read_exact(&mut one))
                .await
                .unwrap()
                .unwrap();
            server.write_all(&[one[0].wrapping_add(1)]).await.unwrap();
            tokio::time::timeout(HANG, client.read_exact(&mut one))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(one[0], round.wrapping_add(1));
        }
        drop(client);
        drop(server);
        tokio::time::timeout(HANG, pump).await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tcp_to_a_unix_socket_carries_every_byte_and_the_half_close() {
        // client (TCP) <-> (a | pump | b) <-> server (unix)
        let (mut client, a) = pair().await;
        let (b, mut server) = UnixStream::pair().unwrap();
        let pump = tokio::spawn(async move { pump(&a, &b, HANG).await });
        let up: Vec<u8> = (0..(4u32 << 20))
            .map(|i| (i * 31 + i / 997) as u8)
            .collect();
        let up2 = up.clone();
        let cl = tokio::spawn(async move {
            client.write_all(&up2).await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut req = Vec::new();
        tokio::time::timeout(HANG, server.read_to_end(&mut req))
            .await
            .unwrap()
            .unwrap();
        assert!(req == up, "every byte up ({} of {})", req.len(), up.len());
        server.write_all(b"done").await.unwrap();
        drop(server);
        let got = tokio::time::timeout(HANG, cl).await.unwrap().unwrap();
        assert_eq!(got, b"done");
        tokio::time::timeout(HANG, pump).await.unwrap().unwrap();
    }
}
