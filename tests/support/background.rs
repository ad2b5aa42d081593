//! A loopback server of the test harness (the fault proxy, the TLS front) on
//! its own thread with its own Tokio runtime, so it keeps serving whatever the
//! test's runtime is doing (even a blocking call), and can be used from sync
//! code too. Dropping it stops the runtime, which closes every connection.

use std::{
    future::Future,
    net::{Ipv4Addr, SocketAddr},
    thread,
};

use tokio::{net::TcpListener, sync::oneshot};

#[derive(Debug)]
pub struct BackgroundServer {
    addr: SocketAddr,
    /// Dropping it tells the thread to stop.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Binds a free `127.0.0.1` port and runs `serve` on it, on a thread named
    /// `<name>-<port>`. Connections are accepted as soon as this returns.
    pub fn start<Serve, Served>(name: &str, serve: Serve) -> BackgroundServer
    where
        Serve: FnOnce(TcpListener) -> Served + Send + 'static,
        Served: Future<Output = ()>,
    {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("binding the test {name} to 127.0.0.1:0: {e}"));
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name(format!("{name}-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a Tokio runtime for the test server");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("registering the listener");
                    tokio::select! {
                        _ = stopped => {}
                        () = serve(listener) => {}
                    }
                });
            })
            .expect("starting the test server's thread");
        BackgroundServer { addr, stop: Some(stop), thread: Some(thread) }
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
