//! TLS for tests: a throwaway certificate authority (for a TLS listener of
//! OpenBao, or client certificates), and, for a link the test servers do not
//! secure themselves (Tansu has no TLS listener), a TLS front that terminates TLS with a certificate of that authority
//! and forwards the plain bytes to a loopback upstream.
//!
//! ```ignore
//! let ca = TestCa::new("kafka test CA");
//! let front = TlsFront::start(upstream, &ca); // clients trust ca.ca_file()
//! ```
//!
//! Like [`super::proxy::Proxy`], the front is a [`BackgroundServer`]: it stops
//! when dropped.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    },
    TlsAcceptor,
};

use super::background::BackgroundServer;

/// A certificate authority made for one test; its certificate is in a PEM file
/// that clients are told to trust.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-signed CA certificate");
        let dir = tempfile::tempdir().expect("temp dir for the CA");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, issuer.pem()).expect("write the CA certificate");
        TestCa { issuer, ca_file, _dir: dir }
    }

    /// The CA certificate (PEM) for clients to trust.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A certificate issued by this CA for `127.0.0.1` and `localhost` (good
    /// for a server or a client), and its key.
    fn issue(&self) -> (rcgen::Certificate, KeyPair) {
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("certificate parameters");
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.issuer).expect("certificate");
        (certificate, key)
    }

    /// [`TestCa::issue`] as PEM files beside the CA's: `<name>.pem` and
    /// `<name>-key.pem` (PKCS#8).
    pub fn issue_files(&self, name: &str) -> (PathBuf, PathBuf) {
        let (certificate, key) = self.issue();
        let dir = self.ca_file.parent().expect("the CA's directory");
        let (certificate_file, key_file) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")));
        std::fs::write(&certificate_file, certificate.pem()).expect("write the certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
        (certificate_file, key_file)
    }

    fn server_certificate(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let (certificate, key) = self.issue();
        (certificate.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
    }
}

/// A running TLS front. See the module comment.
pub struct TlsFront {
    server: BackgroundServer,
    shared: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    handshakes: AtomicU64,
    failed_handshakes: AtomicU64,
}

impl TlsFront {
    /// Starts a front to `upstream` (loopback) on a free `127.0.0.1` port, with
    /// a server certificate issued by `ca`.
    pub fn start(upstream: SocketAddr, ca: &TestCa) -> TlsFront {
        assert!(upstream.ip().is_loopback(), "the TLS front only forwards to loopback, not to {upstream}");
        let (certificate, key) = ca.server_certificate();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![certificate], key)
            .expect("server certificate and key");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let shared = Arc::new(Counters::default());
        let counters = shared.clone();
        let server =
            BackgroundServer::start("tls-front", move |listener| accept_loop(listener, acceptor, upstream, counters));
        TlsFront { server, shared }
    }

    /// Where clients connect (TLS): `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> u64 {
        self.shared.handshakes.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed (e.g. a client that does not trust the CA).
    pub fn failed_handshakes(&self) -> u64 {
        self.shared.failed_handshakes.load(Ordering::SeqCst)
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, upstream: SocketAddr, counters: Arc<Counters>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut client = match acceptor.accept(client).await {
                Ok(client) => client,
                Err(_) => {
                    counters.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            };
            counters.handshakes.fetch_add(1, Ordering::SeqCst);
            let Ok(mut server) = TcpStream::connect(upstream).await else { return };
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}
