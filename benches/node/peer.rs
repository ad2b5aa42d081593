//! The fourth load: the Python platform's own pattern for a Vault node
//! (`../shared/bench/python_peer.py`: hvac in a thread pool, confluent-kafka),
//! the comparison users will make. It answers on the default topics, so its
//! requests go there; between its runs it is stopped (SIGSTOP), so it costs
//! the others nothing.

use std::process::{Child, Command, Stdio};

use super::*;

/// Where the peer's script is unless `--python-peer` says otherwise.
pub(crate) const DEFAULT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/bench/python_peer.py");

/// The peer's fixed topics (see the script).
const REQUESTS: &str = "onex.cmd.omnibase-infra.vault-request.v1";
const COMPLETED: &str = "onex.evt.omnibase-infra.vault-completed.v1";
const FAILED: &str = "onex.evt.omnibase-infra.vault-failed.v1";
const DEAD_LETTERS: &str = "onex.dlq.omnibase-infra.vault-request.v1";

pub(crate) struct PythonPeer {
    child: Child,
    pub(crate) bus: Arc<BusLoop>,
}

impl PythonPeer {
    /// Starts the script with the bench's Python (`ONEX_PYTHON`, which has
    /// hvac and confluent-kafka) against the stack, and a requester for it.
    /// `Err` says why it cannot run here.
    pub(crate) async fn start(script: &Path, contract: &Contract) -> Result<PythonPeer, String> {
        if !script.is_file() {
            return Err(format!("{} not found (give --python-peer PATH)", script.display()));
        }
        let python = support::tool_path("ONEX_PYTHON").ok_or("no ONEX_PYTHON (run scripts/install-test-servers.sh)")?;
        let stack = support::servers();
        let bootstrap = stack.bootstrap_servers();
        support::bus::create_topics(&bootstrap, &[REQUESTS, COMPLETED, FAILED, DEAD_LETTERS], PARTITIONS).await;
        let log = std::fs::File::create(std::env::temp_dir().join("onex-bench-python-peer.log"))
            .map_err(|e| format!("the peer's log file: {e}"))?;
        let child = Command::new(python)
            .arg(script)
            .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env("VAULT_ADDR", stack.vault_addr())
            .env("VAULT_TOKEN", stack.root_token())
            .env("ONEX_GROUP_ID", format!("onex-bench-python-peer-{}", Uuid::new_v4().simple()))
            // As the harness starts the node. Stopped between its runs, the
            // peer leaves its group and joins again when it goes on.
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", script.display()))?;
        let bus = Arc::new(BusLoop::start(contract, REQUESTS, &[COMPLETED, FAILED], Some(FAILED)));
        Ok(PythonPeer { child, bus })
    }

    /// Lets the peer and its requester run (true) or stops both (false).
    pub(crate) fn set_running(&self, on: bool) {
        // SAFETY: kill(2) with a pid of our own child and a valid signal.
        unsafe { libc::kill(self.child.id() as i32, if on { libc::SIGCONT } else { libc::SIGSTOP }) };
        self.bus.set_fetching(on);
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
