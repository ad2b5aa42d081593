//! `onex-vault-adapter request …`: one typed request to the node through the
//! client library (signed with `--identity`, sealed replies opened), the
//! result printed as a table or as JSON.
//!
//! Exit codes: 0 success; 1 the node answered with an error (its code is
//! printed); 2 bad usage, or no answer (Kafka unreachable, timeout).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use onex_vault_client::{ClientError, VaultAdapterClient};

use crate::bus::BusArgs;
use onex_vault_models::{
    DeleteSecret, FolderPath, GetSecret, ListSecrets, LookupLease, OperationResult, RenewLease, RenewToken,
    RevokeLease, SecretData, SecretPath, SetSecret, VaultRequest,
};
use serde_json::{json, Map, Value};

#[derive(Args)]
pub struct RequestArgs {
    #[command(subcommand)]
    operation: RequestOperation,
    #[command(flatten)]
    bus: BusArgs,
    /// Print the reply's result as JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum RequestOperation {
    /// Read a secret: `get app/db [--version N]`.
    Get {
        path: String,
        #[arg(long)]
        version: Option<u64>,
        #[arg(long)]
        mount: Option<String>,
    },
    /// Write a secret: `set app/db user=app password=s3cret` (values as given, strings).
    Set {
        path: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        #[arg(long)]
        mount: Option<String>,
        /// Check-and-set: the version this write replaces (0: create only).
        #[arg(long)]
        cas: Option<u64>,
    },
    /// Soft-delete the latest version of a secret.
    Delete {
        path: String,
        #[arg(long)]
        mount: Option<String>,
    },
    /// List a folder's keys (`list app/`; no folder: the mount's root).
    List {
        #[arg(default_value = "")]
        folder: String,
        #[arg(long)]
        mount: Option<String>,
    },
    /// Renew a lease: `renew-lease database/creds/app/abc [--increment 3600] [--keep-alive]`.
    RenewLease {
        lease_id: String,
        #[arg(long)]
        increment: Option<u64>,
        #[arg(long)]
        keep_alive: bool,
    },
    /// Look a lease up.
    LookupLease { lease_id: String },
    /// Revoke a lease.
    RevokeLease { lease_id: String },
    /// Renew the node's own Vault token.
    RenewToken {
        #[arg(long)]
        increment: Option<u64>,
    },
    /// Describe the node's own token (TTL, policies).
    LookupToken,
    /// A secret's metadata (versions, times, custom metadata).
    ReadMetadata {
        path: String,
        #[arg(long)]
        mount: Option<String>,
    },
    /// Change a secret's metadata: `write-metadata app/db --custom owner=billing --max-versions 5`.
    WriteMetadata {
        path: String,
        #[arg(long)]
        mount: Option<String>,
        /// Custom metadata KEY=VALUE (repeat; replaces the custom metadata).
        #[arg(long = "custom", value_name = "KEY=VALUE")]
        custom: Vec<String>,
        #[arg(long)]
        max_versions: Option<u64>,
        #[arg(long)]
        cas_required: Option<bool>,
        #[arg(long)]
        delete_version_after: Option<String>,
    },
    /// Restore soft-deleted versions: `undelete app/db 2 3`.
    Undelete {
        path: String,
        #[arg(required = true)]
        versions: Vec<u64>,
        #[arg(long)]
        mount: Option<String>,
    },
    /// New random value for one key: `rotate app/db password --length 40 [--alphabet hex]`.
    /// The value is shown only when the reply is sealed (needs --identity) or wrapped.
    Rotate {
        path: String,
        key: String,
        #[arg(long, default_value_t = 32)]
        length: u32,
        /// alphanumeric, hex, base64url, or any other string: its characters.
        #[arg(long, default_value = "alphanumeric")]
        alphabet: String,
        #[arg(long)]
        mount: Option<String>,
        /// sealed, wrapped or clear (default: the node's contract).
        #[arg(long)]
        delivery: Option<String>,
    },
    /// Dynamic credentials: `issue-credentials database creds/app [--keep-alive]`,
    /// `issue-credentials pki issue/web --param common_name=web.example --param ttl=1h`
    /// (with --param: a POST of those parameters, as strings; else a GET).
    IssueCredentials {
        /// The secrets engine's mount (`database`, `pki`).
        mount: String,
        /// The endpoint under it (`creds/ROLE`, `issue/ROLE`).
        path: String,
        /// A parameter KEY=VALUE (repeat).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Have the node keep the lease renewed.
        #[arg(long)]
        keep_alive: bool,
        /// sealed, wrapped or clear (default: the node's contract).
        #[arg(long)]
        delivery: Option<String>,
    },
    /// Transit: encrypt base64 plaintext: `encrypt KEY aGVsbG8=`.
    Encrypt {
        key: String,
        plaintext: String,
        #[arg(long)]
        mount: Option<String>,
    },
    /// Transit: decrypt a ciphertext (plaintext printed base64).
    Decrypt {
        key: String,
        ciphertext: String,
        #[arg(long)]
        mount: Option<String>,
        #[arg(long)]
        delivery: Option<String>,
    },
    /// Transit: re-encrypt with the key's latest version.
    Rewrap {
        key: String,
        ciphertext: String,
        #[arg(long)]
        mount: Option<String>,
    },
}

impl RequestOperation {
    /// The typed request, or what is wrong with the arguments.
    fn request(self) -> Result<VaultRequest, String> {
        let mount = |m: Option<String>| {
            m.map(onex_vault_models::MountName::new).transpose().map_err(|e| format!("--mount: {e}"))
        };
        let path = |p: String| SecretPath::new(p).map_err(|e| format!("path: {e}"));
        Ok(match self {
            RequestOperation::Get { path: p, version, mount: m } => VaultRequest::GetSecret(GetSecret {
                namespace: None,
                mount: mount(m)?,
                path: path(p)?,
                version,
                consistency: Default::default(),
                delivery: None,
            }),
            RequestOperation::Set { path: p, pairs, mount: m, cas } => {
                let data = self::pairs(&pairs)?;
                VaultRequest::SetSecret(SetSecret {
                    namespace: None,
                    mount: mount(m)?,
                    path: path(p)?,
                    data: SecretData::new(data),
                    sealed_data: None,
                    cas,
                })
            }
            RequestOperation::Delete { path: p, mount: m } => VaultRequest::DeleteSecret(DeleteSecret {
                namespace: None,
                mount: mount(m)?,
                path: path(p)?,
                versions: None,
                destroy: false,
                all_versions: false,
            }),
            RequestOperation::List { folder, mount: m } => VaultRequest::ListSecrets(ListSecrets {
                namespace: None,
                mount: mount(m)?,
                path: FolderPath::new(folder).map_err(|e| format!("folder: {e}"))?,
            }),
            RequestOperation::RenewLease { lease_id, increment, keep_alive } => VaultRequest::RenewLease(RenewLease {
                namespace: None,
                lease_id,
                increment_seconds: increment,
                keep_alive,
            }),
            RequestOperation::LookupLease { lease_id } => {
                VaultRequest::LookupLease(LookupLease { namespace: None, lease_id })
            }
            RequestOperation::RevokeLease { lease_id } => {
                VaultRequest::RevokeLease(RevokeLease { namespace: None, lease_id })
            }
            RequestOperation::RenewToken { increment } => {
                VaultRequest::RenewToken(RenewToken { increment_seconds: increment })
            }
            // The rest are built from their wire form, so the models' own
            // parsing and validation apply unchanged.
            RequestOperation::LookupToken => wire(json!({"operation": "lookup_token"}))?,
            RequestOperation::ReadMetadata { path, mount } => {
                wire(json!({"operation": "read_metadata", "path": path, "mount": mount}))?
            }
            RequestOperation::WriteMetadata {
                path,
                mount,
                custom,
                max_versions,
                cas_required,
                delete_version_after,
            } => {
                let custom = if custom.is_empty() { None } else { Some(pairs(&custom)?) };
                wire(json!({"operation": "write_metadata", "path": path, "mount": mount, "custom_metadata": custom,
                    "max_versions": max_versions, "cas_required": cas_required,
                    "delete_version_after": delete_version_after}))?
            }
            RequestOperation::Undelete { path, versions, mount } => {
                wire(json!({"operation": "undelete_versions", "path": path, "versions": versions, "mount": mount}))?
            }
            RequestOperation::Rotate { path, key, length, alphabet, mount, delivery } => {
                let alphabet = match alphabet.as_str() {
                    "alphanumeric" | "hex" | "base64url" => json!(alphabet),
                    custom => json!({ "custom": custom }),
                };
                wire(json!({"operation": "rotate_secret", "path": path, "key": key, "length": length,
                    "alphabet": alphabet, "mount": mount, "delivery": delivery}))?
            }
            RequestOperation::IssueCredentials { mount, path, params, keep_alive, delivery } => {
                let parameters = if params.is_empty() { None } else { Some(pairs(&params)?) };
                wire(json!({"operation": "issue_credentials", "mount": mount, "path": path,
                    "parameters": parameters, "keep_alive": keep_alive, "delivery": delivery}))?
            }
            RequestOperation::Encrypt { key, plaintext, mount } => {
                wire(json!({"operation": "encrypt", "key": key, "plaintext": plaintext, "mount": mount}))?
            }
            RequestOperation::Decrypt { key, ciphertext, mount, delivery } => wire(
                json!({"operation": "decrypt", "key": key, "ciphertext": ciphertext, "mount": mount, "delivery": delivery}),
            )?,
            RequestOperation::Rewrap { key, ciphertext, mount } => {
                wire(json!({"operation": "rewrap", "key": key, "ciphertext": ciphertext, "mount": mount}))?
            }
        })
    }
}

/// `KEY=VALUE` arguments as a JSON object of strings.
fn pairs(pairs: &[String]) -> Result<Map<String, Value>, String> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) = pair.split_once('=').ok_or(format!("{pair:?}: expected KEY=VALUE"))?;
            Ok((key.to_owned(), Value::String(value.to_owned())))
        })
        .collect()
}

/// A request from its wire form (nulls dropped), named fields in errors.
fn wire(mut payload: Value) -> Result<VaultRequest, String> {
    if let Value::Object(fields) = &mut payload {
        fields.retain(|_, value| !value.is_null());
    }
    serde_path_to_error::deserialize(payload).map_err(|e| {
        let at = e.path().to_string();
        format!("{at}: {}", e.into_inner())
    })
}

pub fn run(args: RequestArgs) -> ExitCode {
    let usage = |problem: String| {
        eprintln!("error: {problem}");
        ExitCode::from(2)
    };
    let request = match args.operation.request() {
        Ok(request) => request,
        Err(problem) => return usage(problem),
    };
    if let Err(problem) = request.validate() {
        return usage(problem.to_string());
    }
    let settings = match args.bus.client_settings() {
        Ok(settings) => settings,
        Err(problem) => return usage(problem),
    };
    let outcome = tokio::runtime::Runtime::new().map_err(|e| ClientError::Invalid(e.to_string())).and_then(|rt| {
        rt.block_on(async {
            let client = VaultAdapterClient::connect(settings).await?;
            client.call(request).await
        })
    });
    match outcome {
        Ok(result) => {
            print_result(&result, args.json);
            ExitCode::SUCCESS
        }
        Err(ClientError::Reply(error)) => {
            eprintln!("{}: {}", error.code, error.message);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&error).unwrap_or_default());
            }
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("no answer: {error}");
            ExitCode::from(2)
        }
    }
}

/// JSON, or one `field  value` line per field (a secret's data one key per
/// line, a list one key per line).
fn print_result(result: &OperationResult, json: bool) {
    let value = serde_json::to_value(result).unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return;
    }
    match (result, value) {
        (OperationResult::ListSecrets(list), _) => list.keys.iter().for_each(|key| println!("{key}")),
        (_, Value::Object(fields)) => {
            let mut rows: Vec<(String, String)> = Vec::new();
            for (field, value) in fields {
                match value {
                    Value::Object(inner) => {
                        rows.extend(inner.into_iter().map(|(key, v)| (format!("{field}.{key}"), plain(&v))))
                    }
                    other => rows.push((field, plain(&other))),
                }
            }
            let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (key, value) in rows {
                println!("{key:<width$}  {value}");
            }
        }
        (_, other) => println!("{}", plain(&other)),
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}
