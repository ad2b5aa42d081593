//! A loopback TCP proxy for fault tests: put it between a client (e.g. the node
//! under test) and a server (e.g. Vault), then make the link slow, stalled or cut at
//! any moment, and see how many connections and bytes went through.
//!
//! ```ignore
//! let proxy = Proxy::start(servers().vault_socket_addr());
//! let vault_addr = format!("http://{}", proxy.addr()); // give this to the client
//! proxy.delay(Duration::from_millis(500)); // every chunk, each way, 500 ms late
//! proxy.stall();                           // read but hold everything
//! proxy.cut();                             // reset all connections, and new ones
//! proxy.pass();                            // back to normal
//! ```
//!
//! Each proxy is a [`BackgroundServer`]: it keeps forwarding whatever the test's
//! runtime is doing, and dropping the [`Proxy`] stops it and closes every
//! connection it holds.
//!
//! Bounded by design (it only ever talks to loopback): at most [`MAX_CONNECTIONS`]
//! at a time (more are reset), and per direction of a connection at most
//! [`MAX_CHUNKS_HELD`] chunks of up to [`CHUNK_SIZE`] bytes read ahead of what was
//! forwarded; past that it stops reading, and TCP flow control holds the sender.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch, Semaphore},
    time::Instant,
};

use super::background::BackgroundServer;

/// Connections forwarded at the same time; further ones are reset.
pub const MAX_CONNECTIONS: usize = 256;
/// Largest chunk read and forwarded at once.
pub const CHUNK_SIZE: usize = 16 * 1024;
/// Chunks one direction of a connection may hold (delayed or stalled) before it
/// stops reading.
pub const MAX_CHUNKS_HELD: usize = 64;
/// How long connecting to the upstream server may take before the client is reset.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the proxy does with traffic; change it with [`Proxy::set_mode`] or the
/// shorthands ([`Proxy::pass`], ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything at once.
    Pass,
    /// Forward each chunk this long after it was read (each way; order is kept).
    Delay(Duration),
    /// Accept connections and read, but forward nothing; what was read is held and
    /// forwarded when the mode changes (like a link that comes back), unless it is
    /// [`Mode::Cut`].
    Stall,
    /// Reset every current connection, and reset new ones right after accepting
    /// them, until the mode changes.
    Cut,
}

/// A running proxy. See the module comment.
#[derive(Debug)]
pub struct Proxy {
    server: BackgroundServer,
    upstream: SocketAddr,
    shared: Arc<Shared>,
}

/// State shared by the proxy's handle and its thread.
#[derive(Debug)]
struct Shared {
    mode: watch::Sender<Mode>,
    connections: AtomicU64,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
}

impl Proxy {
    /// Starts a proxy to `upstream` (a loopback address) on a free `127.0.0.1` port,
    /// in [`Mode::Pass`]. It accepts connections as soon as this returns.
    pub fn start(upstream: SocketAddr) -> Proxy {
        assert!(upstream.ip().is_loopback(), "the test proxy only forwards to loopback, not to {upstream}");
        let shared = Arc::new(Shared {
            mode: watch::Sender::new(Mode::Pass),
            connections: AtomicU64::new(0),
            bytes_to_upstream: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
        });
        let served = Arc::clone(&shared);
        let server = BackgroundServer::start("test-proxy", move |listener| accept_loop(listener, upstream, served));
        Proxy { server, upstream, shared }
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The server the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.shared.mode.borrow()
    }

    /// Switches the mode; it applies at once to current and new connections.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    /// Forward everything at once (also ends a stall or cut).
    pub fn pass(&self) {
        self.set_mode(Mode::Pass);
    }

    /// Forward each chunk `delay` after it was read, each way.
    pub fn delay(&self, delay: Duration) {
        self.set_mode(Mode::Delay(delay));
    }

    /// Accept and read, but forward nothing until the mode changes.
    pub fn stall(&self) {
        self.set_mode(Mode::Stall);
    }

    /// Reset all connections, and new ones, until the mode changes.
    pub fn cut(&self) {
        self.set_mode(Mode::Cut);
    }

    /// Connections accepted so far, including ones reset because of [`Mode::Cut`].
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from clients to the upstream server so far.
    pub fn bytes_to_upstream(&self) -> u64 {
        self.shared.bytes_to_upstream.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the upstream server to clients so far.
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.bytes_to_client.load(Ordering::SeqCst)
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                // E.g. out of file descriptors: back off briefly instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let slot = Arc::clone(&slots).try_acquire_owned();
        match slot {
            Ok(slot) if *shared.mode.borrow() != Mode::Cut => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    relay(client, upstream, shared).await;
                    drop(slot);
                });
            }
            _ => reset(client),
        }
    }
}

/// Forwards one connection both ways until both sides are done, or resets both
/// sides when the mode becomes [`Mode::Cut`].
async fn relay(mut client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut mode = shared.mode.subscribe();
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream));
    let mut server = tokio::select! {
        connected = connect => match connected {
            Ok(Ok(server)) => server,
            _ => return reset(client),
        },
        () = until_cut(&mut mode) => return reset(client),
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);

    let cut = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = forward(client_read, server_write, &shared, &shared.bytes_to_upstream);
        let down = forward(server_read, client_write, &shared, &shared.bytes_to_client);
        tokio::select! {
            _ = async { tokio::join!(up, down) } => false,
            () = until_cut(&mut mode) => true,
        }
    };
    if cut {
        reset(client);
        reset(server);
    }
}

/// Copies `from` to `to` chunk by chunk, applying the mode, and counts the bytes
/// forwarded in `forwarded`. When `from` ends, shuts down `to` (half-close).
///
/// A reader and a writer run side by side, joined by a bounded queue: the reader
/// stamps each chunk with when it may go out (now, or now + delay), the writer
/// waits for that moment and for any stall to end.
async fn forward(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    shared: &Shared,
    forwarded: &AtomicU64,
) {
    let (queue, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(MAX_CHUNKS_HELD);
    let read = async move {
        let mut buffer = vec![0; CHUNK_SIZE];
        loop {
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let delay = match *shared.mode.borrow() {
                Mode::Delay(delay) => delay,
                _ => Duration::ZERO,
            };
            let chunk = (Instant::now() + delay, buffer[..read].to_vec());
            if queue.send(chunk).await.is_err() {
                break; // the writer gave up
            }
        }
    };
    let mut mode = shared.mode.subscribe();
    let write = async move {
        while let Some((due, chunk)) = queued.recv().await {
            // Held while stalled (and while cut, until the relay resets the connection).
            let flowing = |mode: &Mode| matches!(mode, Mode::Pass | Mode::Delay(_));
            if mode.wait_for(flowing).await.is_err() {
                return;
            }
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return; // dropping `queued` stops the reader too
            }
            forwarded.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// Returns once the mode is [`Mode::Cut`] (at once if it is already).
async fn until_cut(mode: &mut watch::Receiver<Mode>) {
    if mode.wait_for(|mode| *mode == Mode::Cut).await.is_err() {
        // The proxy is shutting down; its runtime will cancel this.
        std::future::pending::<()>().await;
    }
}

/// Closes `stream` with a TCP reset (RST) instead of an orderly FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
