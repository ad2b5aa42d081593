//! A Kafka link that a fault test can slow down or cut for the node alone.
//!
//! Why not just a [`Proxy`] in front of the broker: a Kafka client uses its
//! bootstrap address only for the first metadata request, then connects to the
//! addresses the broker *advertises* (its own), so the node would bypass the
//! proxy after a second. Why not a second broker that advertises the proxy's
//! address: every client of that broker (the test's producer and reply watcher
//! too) would then go through the proxy, a cut would cut the test off as well,
//! and "requests sent during the cut" could not be sent.
//!
//! So the link is
//!
//! ```text
//! node ──▶ Proxy (faults) ──▶ Tansu proxy (relay) ──▶ the test broker ◀── test clients
//! ```
//!
//! The relay (`tansu proxy`) forwards the Kafka protocol to the binary's broker
//! and rewrites the broker address in metadata and coordinator answers to the
//! [`Proxy`]'s, so the node only ever learns the Proxy's address, and the test's
//! own clients keep talking to the broker directly while the node's link is
//! cut. The relay is the Tansu binary the local stack uses (it can front the
//! containers stack's Apache Kafka too); without it [`KafkaLink::start`] fails.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    ClientConfig,
};

use super::{
    local_stack::{spawn_kafka_relay, KafkaRelay},
    proxy::Proxy,
    servers::{free_port, servers},
    tls::{TestCa, TlsFront},
};

/// How long the relay may take to answer metadata through the proxy.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The node's side of a cuttable Kafka link (see the module comment).
pub struct KafkaLink {
    /// The fault proxy behind the node's end: `cut()`, `stall()`, `pass()`, ...
    pub proxy: Proxy,
    /// With [`KafkaLink::start_tls`], the node's end: TLS in front of the proxy.
    tls: Option<(TlsFront, PathBuf)>,
    relay: KafkaRelay,
}

impl KafkaLink {
    /// Starts the relay and the proxy (in [`super::proxy::Mode::Pass`]) and waits
    /// until a metadata request through the proxy names the proxy as the broker.
    pub fn start() -> Result<KafkaLink, String> {
        KafkaLink::start_with(None)
    }

    /// The same link with TLS at the node's end: the node connects to a
    /// [`TlsFront`] with a certificate of `ca`, in front of the proxy.
    ///
    /// ```text
    /// node ──TLS──▶ TlsFront ──▶ Proxy ──▶ Tansu proxy (relay) ──▶ the test broker
    /// ```
    pub fn start_tls(ca: &TestCa) -> Result<KafkaLink, String> {
        KafkaLink::start_with(Some(ca))
    }

    fn start_with(ca: Option<&TestCa>) -> Result<KafkaLink, String> {
        let origin = servers().bootstrap_servers();
        let log_dir = servers().log_dir().map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        // The relay advertises the node's end of the link, which forwards to the
        // relay: take the relay's port first (the proxy connects upstream per
        // connection only).
        let relay_port = free_port();
        let relay_addr: SocketAddr = ([127, 0, 0, 1], relay_port).into();
        let proxy = Proxy::start(relay_addr);
        let tls = ca.map(|ca| (TlsFront::start(proxy.addr(), ca), ca.ca_file().to_path_buf()));
        let advertised = tls.as_ref().map_or(proxy.addr(), |(front, _)| front.addr()).to_string();
        let relay = spawn_kafka_relay(relay_port, &advertised, &origin, &log_dir)?;
        let mut link = KafkaLink { proxy, tls, relay };
        link.wait_ready()?;
        Ok(link)
    }

    /// `bootstrap.servers` for the node: the node's end of the link.
    pub fn bootstrap_servers(&self) -> String {
        self.tls.as_ref().map_or(self.proxy.addr(), |(front, _)| front.addr()).to_string()
    }

    /// The TLS front, with [`KafkaLink::start_tls`].
    pub fn tls_front(&self) -> Option<&TlsFront> {
        self.tls.as_ref().map(|(front, _)| front)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let bootstrap = self.bootstrap_servers();
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &bootstrap).set("socket.connection.setup.timeout.ms", "1000");
        if let Some((_, ca_file)) = &self.tls {
            config.set("security.protocol", "ssl").set("ssl.ca.location", ca_file.display().to_string());
        }
        let client: BaseConsumer = config.create().map_err(|e| format!("metadata client for {bootstrap}: {e}"))?;
        let started = Instant::now();
        loop {
            self.relay
                .still_running()
                .map_err(|gone| format!("the Tansu relay stopped ({gone}); see {}", self.relay.log_path().display()))?;
            let last = match client.fetch_metadata(None, Duration::from_millis(1000)) {
                Ok(metadata) => {
                    let brokers: Vec<String> =
                        metadata.brokers().iter().map(|b| format!("{}:{}", b.host(), b.port())).collect();
                    if brokers == [bootstrap.clone()] {
                        return Ok(());
                    }
                    format!("metadata names brokers {brokers:?}, not {bootstrap}")
                }
                Err(e) => format!("metadata request: {e}"),
            };
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "Kafka link not ready after {READY_TIMEOUT:?}: {last}; see {}",
                    self.relay.log_path().display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
