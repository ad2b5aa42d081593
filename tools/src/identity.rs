//! Runtime identity files: `keygen` writes them (private keys, mode 0600),
//! `send`, `request` and `resolve` read them to sign requests and open
//! sealed replies.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use onex_vault_models::RuntimeIdentity;

/// Reads a runtime identity file (see `keygen`).
pub fn read_identity(path: &Path) -> anyhow::Result<RuntimeIdentity> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    RuntimeIdentity::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Writes `text` to a new file only its owner can read.
pub fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())
}

/// The `keygen` command: a runtime's keys (a requester's, or the node's own)
/// into `<dir>/<name>.identity.json`; prints its public key and access-policy entry.
pub fn keygen(name: &str, dir: &Path) -> ExitCode {
    let suffix = chrono::Utc::now().format("%Y%m%d").to_string();
    let identity = match RuntimeIdentity::generate(name, &suffix) {
        Ok(identity) => identity,
        Err(error) => {
            eprintln!("cannot generate keys for {name:?}: {error} (names: A-Z a-z 0-9 . _ -)");
            return ExitCode::FAILURE;
        }
    };
    let path = dir.join(format!("{name}.identity.json"));
    match write_private_file(&path, &identity.to_json()) {
        Ok(()) => {
            eprintln!("wrote {} (private keys; keep it with the requester, mode 0600)", path.display());
            eprintln!(
                "its public signing key (register it where {name}'s messages are verified): {}",
                identity.public_key_base64()
            );
            eprintln!("for a requester, add this to the node's access_policy.requesters and fill in its grants:");
            print!("{}", identity.policy_entry());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot write {}: {error}", path.display());
            ExitCode::FAILURE
        }
    }
}
