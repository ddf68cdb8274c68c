//! The stable local database endpoint: a loopback TCP forwarder that every client (our EMR, or
//! stock OSCAR with its one `db_uri`) connects to instead of a MariaDB node, so a failover
//! changes where the watchdog points it rather than every client's configuration. Re-pointing
//! cuts every connection to the old node, because a fenced old primary must never receive
//! another write through us.
//!
//! The fence is a lock, not just a cancellation: every write a connection makes (towards the
//! node and towards the client) happens under a read lock on the route after checking the
//! connection's generation, and [`Endpoint::point_at`] changes the generation under the write
//! lock. Once `point_at` returns, no write of an older generation can reach the kernel; the
//! cancellation that follows only makes the connection's task drop both sockets promptly, so a
//! client blocked in a read sees EOF (or a reset) at once and retries against the new primary.
//! Bytes the kernel had already accepted before `point_at` was called may still be delivered.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

/// How long a new client waits for the node to accept before we close it: on loopback or a LAN a
/// live node answers in milliseconds, and a client held longer only delays its own retry (which
/// the watchdog may by then have pointed elsewhere).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The most connections forwarded at once. Each costs two file descriptors; the bound keeps a
/// flood (or a client leaking connections) from exhausting ours, which would also stop the
/// watchdog's own work. It is well above what the EMR's pools and MariaDB's `max_connections`
/// allow, so only something misbehaving hits it.
pub const MAX_CONNECTIONS: usize = 1024;

/// The pause after a failed `accept`: errors such as EMFILE repeat until a descriptor is freed,
/// and retrying at once would spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Where new connections go, and the generation that connections opened to it belong to.
#[derive(Debug, Clone)]
struct Route {
    generation: u64,
    target: Option<SocketAddr>,
    /// Cancelled when this generation ends (re-pointing or stopping): a child of `Shared::stop`,
    /// so stopping the endpoint cuts every generation's connections.
    cut: CancellationToken,
}

#[derive(Debug)]
struct Shared {
    route: RwLock<Route>,
    /// Stops the accept loop and, through the route's child tokens, every connection.
    stop: CancellationToken,
    /// Every connection's task: its length is the open connection count, and waiting on it lets
    /// the accept loop end only after every connection is closed.
    connections: TaskTracker,
}

impl Shared {
    fn route(&self) -> RwLockReadGuard<'_, Route> {
        // Nothing panics while holding the lock (it guards plain assignments and single
        // non-blocking writes), so a poisoned lock still holds a consistent route.
        self.route.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The stable local database endpoint (see the module documentation). Dropping it stops it,
/// as does cancelling the token given to [`Endpoint::bind`]: the listener closes and every
/// forwarded connection is cut.
#[derive(Debug)]
#[must_use = "dropping an Endpoint stops it"]
pub struct Endpoint {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// Cancelled once the accept loop has ended and every connection is closed.
    stopped: CancellationToken,
}

impl Endpoint {
    /// Listens on `addr` and starts accepting in the background, pointed at nothing until
    /// [`Endpoint::point_at`] says where the primary is (failing closed: until the watchdog knows
    /// which node is primary, no client reaches either). Returns once the listener is bound.
    pub async fn bind(addr: SocketAddr, shutdown: CancellationToken) -> io::Result<Endpoint> {
        Self::bind_with_limit(addr, MAX_CONNECTIONS, shutdown).await
    }

    async fn bind_with_limit(
        addr: SocketAddr,
        max_connections: usize,
        shutdown: CancellationToken,
    ) -> io::Result<Endpoint> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        if !local_addr.ip().is_loopback() {
            // Not refused, as a container network may need it, but whoever reaches this address
            // reaches the primary.
            warn!(%local_addr, "the database endpoint listens beyond loopback");
        }
        let stop = shutdown.child_token();
        let shared = Arc::new(Shared {
            route: RwLock::new(Route {
                generation: 0,
                target: None,
                cut: stop.child_token(),
            }),
            stop,
            connections: TaskTracker::new(),
        });
        let stopped = CancellationToken::new();
        let span = tracing::info_span!("db_endpoint", addr = %local_addr);
        tokio::spawn(
            accept_loop(
                listener,
                Arc::clone(&shared),
                max_connections,
                stopped.clone(),
            )
            .instrument(span),
        );
        Ok(Endpoint {
            local_addr,
            shared,
            stopped,
        })
    }

    /// The address clients connect to (with the port chosen if `bind` was given port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends new connections to `target` from now on, and cuts every connection of the previous
    /// generation: when this returns, none of them can write another byte to its node (or to its
    /// client), and their sockets are being closed. Pointing at the same target again also cuts,
    /// which is how to drop connections to a node that was restarted or fenced in place.
    ///
    /// With `None`, new connections are accepted and closed at once rather than refused:
    /// refusing would mean closing the listener, after which another local process could take
    /// the port (and receive the EMR's logins) or our re-bind could fail, while keeping it bound
    /// without accepting leaves clients hanging in the backlog until their own connect timeout.
    /// Accept-then-close costs one loopback round trip; MariaDB clients report it as a lost
    /// connection during the handshake and retry, as fast as after a refusal.
    pub fn point_at(&self, target: Option<SocketAddr>) {
        let fresh = self.shared.stop.child_token();
        let (previous, old_cut, generation) = {
            // Taking the write lock waits for every write in progress (each holds the read lock
            // for its one non-blocking write), and the new generation fences all later ones.
            let mut route = self
                .shared
                .route
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let previous = route.target;
            route.generation += 1;
            route.target = target;
            let old_cut = std::mem::replace(&mut route.cut, fresh);
            (previous, old_cut, route.generation)
        };
        // After the route changed, so a connection still connecting that wakes on this retries
        // against the new target rather than the old one.
        old_cut.cancel();
        info!(
            endpoint = %self.local_addr,
            ?previous,
            ?target,
            generation,
            "database endpoint re-pointed; previous connections cut"
        );
    }

    /// Where new connections go (`None`: they are closed at once).
    pub fn target(&self) -> Option<SocketAddr> {
        self.shared.route().target
    }

    /// How many times [`Endpoint::point_at`] has been called: connections opened before the
    /// latest call have all been cut.
    pub fn generation(&self) -> u64 {
        self.shared.route().generation
    }

    /// The connections being forwarded (or connecting to the target) now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.len()
    }

    /// Resolves once the endpoint has stopped (its shutdown token was cancelled): the listener
    /// is closed and every connection has been closed.
    pub async fn stopped(&self) {
        self.stopped.cancelled().await;
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Nothing else would stop the accept loop, and an orphaned endpoint would keep
        // forwarding to a target no one updates any more.
        self.shared.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    max_connections: usize,
    stopped: CancellationToken,
) {
    // Cancelled however this ends, a panic or the runtime shutting down included, so that
    // `Endpoint::stopped` cannot wait forever.
    let _stopped = stopped.drop_guard();
    info!("database endpoint accepting");
    // Connections closed since the limit was last hit: the warning is logged once per episode
    // rather than once per connection of a flood.
    let mut over_limit: u64 = 0;
    loop {
        let accepted = tokio::select! {
            () = shared.stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (client, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "accepting a database connection failed; pausing");
                tokio::select! {
                    () = shared.stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        // Only this loop adds connections, so the count cannot grow between check and spawn.
        if shared.connections.len() >= max_connections {
            if over_limit == 0 {
                warn!(
                    limit = max_connections,
                    "database endpoint at its connection limit; closing new connections"
                );
            }
            over_limit += 1;
            drop(client);
            continue;
        }
        if over_limit > 0 {
            info!(
                closed = over_limit,
                "database endpoint below its connection limit again"
            );
            over_limit = 0;
        }
        let span = tracing::debug_span!("db_conn", %peer);
        shared
            .connections
            .spawn(serve(Arc::clone(&shared), client).instrument(span));
    }
    // Closing the listener first makes new clients get a refusal rather than wait while the
    // connections (already cut through `stop`'s child tokens) finish closing.
    drop(listener);
    shared.connections.close();
    shared.connections.wait().await;
    info!("database endpoint stopped");
}

/// Forwards one client to the current target until either side closes or its generation ends.
/// Both sockets are dropped (closed) when this returns.
async fn serve(shared: Arc<Shared>, client: TcpStream) {
    let (generation, cut, upstream) = loop {
        if shared.stop.is_cancelled() {
            return;
        }
        let Route {
            generation,
            target,
            cut,
        } = shared.route().clone();
        let Some(target) = target else {
            debug!("no primary to forward to; closing the client");
            return;
        };
        tokio::select! {
            biased;
            // Nothing has been forwarded yet (the server speaks first in MariaDB's protocol),
            // so the client can be sent to the new target without noticing.
            () = cut.cancelled() => {
                debug!(%target, "re-pointed while connecting; trying the new target");
                continue;
            }
            connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)) => {
                match connected {
                    Ok(Ok(upstream)) => {
                        // Re-pointed just as the connection completed: nothing has passed
                        // through it yet, so drop it and try the new target instead.
                        if cut.is_cancelled() {
                            continue;
                        }
                        break (generation, cut, upstream);
                    }
                    Ok(Err(error)) => {
                        warn!(%target, %error, "cannot reach the database; closing the client");
                        return;
                    }
                    Err(_elapsed) => {
                        warn!(
                            %target,
                            timeout = ?CONNECT_TIMEOUT,
                            "the database did not accept in time; closing the client"
                        );
                        return;
                    }
                }
            }
        }
    };
    // Queries and replies are small request/response exchanges: Nagle's algorithm would hold
    // each back waiting for an acknowledgement.
    for (side, stream) in [("client", &client), ("database", &upstream)] {
        if let Err(error) = stream.set_nodelay(true) {
            debug!(side, %error, "cannot set TCP_NODELAY");
        }
    }
    let mut client = Fenced {
        stream: client,
        shared: &shared,
        generation,
    };
    let mut upstream = Fenced {
        stream: upstream,
        shared: &shared,
        generation,
    };
    tokio::select! {
        () = cut.cancelled() => debug!("re-pointed or stopping; closing the connection"),
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
            Ok((to_database, to_client)) => {
                debug!(to_database, to_client, "connection closed");
            }
            Err(error) => debug!(%error, "connection ended"),
        },
    }
}

/// One side of a forwarded connection whose writes stop the moment its generation ends.
#[derive(Debug)]
struct Fenced<'a> {
    stream: TcpStream,
    shared: &'a Shared,
    generation: u64,
}

impl AsyncRead for Fenced<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Fenced<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // The read lock is held across the (non-blocking) write system call, so `point_at`,
        // which changes the generation under the write lock, returns only after this write has
        // either completed or been refused here.
        let route = this.shared.route();
        if route.generation != this.generation {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the database endpoint was re-pointed",
            )));
        }
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        drop(route);
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A FIN carries no data, so it needs no fence: it only passes on the other side's close.
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::future::Future;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use anyhow::{ensure, Context as _};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What "promptly" means in these tests: far above loopback latencies, far below any
    /// client's timeout.
    const PROMPTLY: Duration = Duration::from_secs(1);

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    async fn within<T>(what: &str, future: impl Future<Output = T>) -> anyhow::Result<T> {
        tokio::time::timeout(PROMPTLY, future)
            .await
            .with_context(|| format!("{what}: not within {PROMPTLY:?}"))
    }

    async fn eventually(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
        within(what, async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    /// A stand-in database node: it greets each connection with its name and a newline (the
    /// server speaks first, as MariaDB does), then echoes, recording everything it received.
    struct Node {
        addr: SocketAddr,
        received: Arc<Mutex<Vec<u8>>>,
        open: Arc<AtomicUsize>,
    }

    impl Node {
        async fn start(name: &'static str) -> anyhow::Result<Node> {
            let listener = TcpListener::bind(loopback()).await?;
            let addr = listener.local_addr()?;
            let received = Arc::new(Mutex::new(Vec::new()));
            let open = Arc::new(AtomicUsize::new(0));
            let (node_received, node_open) = (Arc::clone(&received), Arc::clone(&open));
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    node_open.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(echo(
                        stream,
                        name,
                        Arc::clone(&node_received),
                        Arc::clone(&node_open),
                    ));
                }
            });
            Ok(Node {
                addr,
                received,
                open,
            })
        }

        fn received(&self) -> Vec<u8> {
            self.received
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        /// Its connections not yet closed from our side.
        fn open(&self) -> usize {
            self.open.load(Ordering::SeqCst)
        }
    }

    async fn echo(
        mut stream: TcpStream,
        name: &str,
        received: Arc<Mutex<Vec<u8>>>,
        open: Arc<AtomicUsize>,
    ) {
        if stream
            .write_all(format!("{name}\n").as_bytes())
            .await
            .is_ok()
        {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                received
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&buf[..n]);
                if stream.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
        open.fetch_sub(1, Ordering::SeqCst);
    }

    async fn connect(endpoint: &Endpoint) -> anyhow::Result<TcpStream> {
        Ok(TcpStream::connect(endpoint.local_addr()).await?)
    }

    /// Which node the client reached.
    async fn greeting(client: &mut TcpStream) -> anyhow::Result<String> {
        let mut line = [0; 2];
        within("the greeting", client.read_exact(&mut line)).await??;
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    async fn round_trip(client: &mut TcpStream, bytes: &[u8]) -> anyhow::Result<()> {
        client.write_all(bytes).await?;
        let mut back = vec![0; bytes.len()];
        within("the echo", client.read_exact(&mut back)).await??;
        ensure!(back == bytes, "sent {bytes:?}, echoed {back:?}");
        Ok(())
    }

    /// Waits for the endpoint to close `client` (EOF or a reset), returning what arrived first.
    async fn closed(client: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
        within("the client being closed", async {
            let mut seen = Vec::new();
            let mut buf = [0; 1024];
            while let Ok(n @ 1..) = client.read(&mut buf).await {
                seen.extend_from_slice(&buf[..n]);
            }
            seen
        })
        .await
    }

    #[tokio::test]
    async fn forwards_to_the_target_and_counts_connections() -> anyhow::Result<()> {
        let a = Node::start("A").await?;
        let endpoint = Endpoint::bind(loopback(), CancellationToken::new()).await?;
        ensure!(endpoint.target().is_none() && endpoint.generation() == 0);
        endpoint.point_at(Some(a.addr));
        ensure!(endpoint.target() == Some(a.addr) && endpoint.generation() == 1);

        let mut one = connect(&endpoint).await?;
        ensure!(greeting(&mut one).await? == "A\n");
        round_trip(&mut one, b"SELECT 1").await?;
        let mut two = connect(&endpoint).await?;
        ensure!(greeting(&mut two).await? == "A\n");
        ensure!(endpoint.open_connections() == 2);

        drop(one);
        eventually("one connection left", || endpoint.open_connections() == 1).await?;
        drop(two);
        eventually("no connection left", || endpoint.open_connections() == 0).await?;
        eventually("A's connections closed", || a.open() == 0).await?;
        ensure!(a.received() == b"SELECT 1");
        Ok(())
    }

    #[tokio::test]
    async fn re_pointing_cuts_old_connections_and_new_ones_reach_the_new_target(
    ) -> anyhow::Result<()> {
        let a = Node::start("A").await?;
        let b = Node::start("B").await?;
        let endpoint = Endpoint::bind(loopback(), CancellationToken::new()).await?;
        endpoint.point_at(Some(a.addr));
        let mut old = connect(&endpoint).await?;
        ensure!(greeting(&mut old).await? == "A\n");
        round_trip(&mut old, b"before").await?;

        endpoint.point_at(Some(b.addr));
        ensure!(endpoint.target() == Some(b.addr) && endpoint.generation() == 2);
        let leftover = closed(&mut old).await?;
        ensure!(
            leftover.is_empty(),
            "after the cut the client got {leftover:?}"
        );
        eventually("A's connection closed", || a.open() == 0).await?;
        // A write on the cut connection fails or goes nowhere; either way A must not see it.
        let _ignored = old.write_all(b"after").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        ensure!(a.received() == b"before", "A received {:?}", a.received());

        let mut new = connect(&endpoint).await?;
        ensure!(greeting(&mut new).await? == "B\n");
        round_trip(&mut new, b"after").await?;
        ensure!(b.received() == b"after");
        eventually("only the new connection open", || {
            endpoint.open_connections() == 1
        })
        .await?;
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_byte_written_after_point_at_returns_reaches_the_old_target() -> anyhow::Result<()> {
        let a = Node::start("A").await?;
        let b = Node::start("B").await?;
        let endpoint = Endpoint::bind(loopback(), CancellationToken::new()).await?;
        endpoint.point_at(Some(a.addr));
        let mut client = connect(&endpoint).await?;
        ensure!(greeting(&mut client).await? == "A\n");
        let (mut reader, mut writer) = client.into_split();
        // Reading the echoes keeps A from blocking on its replies.
        tokio::spawn(async move {
            let mut buf = [0; 4096];
            while let Ok(1..) = reader.read(&mut buf).await {}
        });
        let switched = Arc::new(AtomicBool::new(false));
        let writing = tokio::spawn({
            let switched = Arc::clone(&switched);
            async move {
                // 'x' before the switch, 'y' once `point_at` has returned: no 'y' may reach A.
                loop {
                    let byte = if switched.load(Ordering::SeqCst) {
                        b'y'
                    } else {
                        b'x'
                    };
                    if writer.write_all(&[byte; 512]).await.is_err() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
        });
        eventually("A receiving", || a.received().len() > 16 * 1024).await?;

        endpoint.point_at(Some(b.addr));
        switched.store(true, Ordering::SeqCst);
        within("the writer seeing the cut", writing).await??;
        eventually("A's connection closed", || a.open() == 0).await?;
        let received = a.received();
        ensure!(
            received.iter().all(|&byte| byte == b'x'),
            "A received a byte written after point_at returned"
        );
        Ok(())
    }

    #[tokio::test]
    async fn no_target_closes_new_clients_at_once() -> anyhow::Result<()> {
        let a = Node::start("A").await?;
        let endpoint = Endpoint::bind(loopback(), CancellationToken::new()).await?;
        let mut early = connect(&endpoint).await?;
        ensure!(closed(&mut early).await?.is_empty());

        endpoint.point_at(Some(a.addr));
        let mut old = connect(&endpoint).await?;
        ensure!(greeting(&mut old).await? == "A\n");
        endpoint.point_at(None);
        ensure!(endpoint.target().is_none());
        ensure!(closed(&mut old).await?.is_empty());
        let mut late = connect(&endpoint).await?;
        ensure!(closed(&mut late).await?.is_empty());
        eventually("no connection left", || endpoint.open_connections() == 0).await?;
        eventually("A's connection closed", || a.open() == 0).await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_target_refusing_connections_closes_the_client_promptly() -> anyhow::Result<()> {
        // A port that was just ours and is now closed: connecting to it is refused.
        let dead = TcpListener::bind(loopback()).await?.local_addr()?;
        let endpoint = Endpoint::bind(loopback(), CancellationToken::new()).await?;
        endpoint.point_at(Some(dead));
        let mut client = connect(&endpoint).await?;
        ensure!(closed(&mut client).await?.is_empty());
        eventually("no connection left", || endpoint.open_connections() == 0).await?;
        Ok(())
    }

    #[tokio::test]
    async fn shutdown_closes_everything_and_ends_the_accept_loop() -> anyhow::Result<()> {
        let a = Node::start("A").await?;
        let shutdown = CancellationToken::new();
        let endpoint = Endpoint::bind(loopback(), shutdown.clone()).await?;
        endpoint.point_at(Some(a.addr));
        let mut one = connect(&endpoint).await?;
        let mut two = connect(&endpoint).await?;
        ensure!(greeting(&mut one).await? == "A\n" && greeting(&mut two).await? == "A\n");

        shutdown.cancel();
        closed(&mut one).await?;
        closed(&mut two).await?;
        within("the endpoint stopping", endpoint.stopped()).await?;
        ensure!(endpoint.open_connections() == 0);
        eventually("A's connections closed", || a.open() == 0).await?;
        ensure!(
            TcpStream::connect(endpoint.local_addr()).await.is_err(),
            "the listener is still open"
        );
        Ok(())
    }

    #[tokio::test]
    async fn dropping_the_endpoint_stops_it() -> anyhow::Result<()> {
        let a = Node::start("A").await?;
        let endpoint = Endpoint::bind(loopback(), CancellationToken::new()).await?;
        endpoint.point_at(Some(a.addr));
        let mut client = connect(&endpoint).await?;
        ensure!(greeting(&mut client).await? == "A\n");
        drop(endpoint);
        closed(&mut client).await?;
        eventually("A's connection closed", || a.open() == 0).await?;
        Ok(())
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed() -> anyhow::Result<()> {
        let a = Node::start("A").await?;
        let endpoint = Endpoint::bind_with_limit(loopback(), 2, CancellationToken::new()).await?;
        endpoint.point_at(Some(a.addr));
        let mut one = connect(&endpoint).await?;
        let mut two = connect(&endpoint).await?;
        ensure!(greeting(&mut one).await? == "A\n" && greeting(&mut two).await? == "A\n");

        let mut extra = connect(&endpoint).await?;
        ensure!(closed(&mut extra).await?.is_empty());
        ensure!(endpoint.open_connections() == 2);
        drop(one);
        eventually("a free slot", || endpoint.open_connections() == 1).await?;
        let mut three = connect(&endpoint).await?;
        ensure!(greeting(&mut three).await? == "A\n");
        round_trip(&mut two, b"still here").await?;
        Ok(())
    }
}
