//! `onex-vault-adapter resolve --contracts DIR`: the secrets ONEX contracts
//! ask for, fetched through the node and handed to a service as environment
//! variables (an env file, or the environment of a command it execs).
//!
//! A contract asks for a secret with a string value `${vault:MOUNT/PATH#FIELD}`,
//! e.g. `password: ${vault:secret/orders/database#password}`. The variable's
//! name is the YAML key path to that value, upper-cased, with `_` between keys
//! and for every character outside `A-Z 0-9` (`database.password` →
//! `DATABASE_PASSWORD`). Every `*.yaml` / `*.yml` file under DIR is scanned;
//! two different references under one name are an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use onex_vault_client::{ClientError, VaultAdapterClient};
use onex_vault_models::{GetSecretsBatch, MountName, OperationResult, SecretPath, VaultRequest};
use serde_json::Value;

/// One `${vault:…}` reference and the variable it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub variable: String,
    pub mount: String,
    pub path: String,
    pub field: String,
    /// Where it was found: `file: key.path`.
    pub origin: String,
}

impl SecretRef {
    /// `mount/path#field`, as written (without `${vault:…}`).
    pub fn target(&self) -> String {
        format!("{}/{}#{}", self.mount, self.path, self.field)
    }
}

/// Parses `${vault:MOUNT/PATH#FIELD}` (the whole string), or `None`.
fn parse_reference(text: &str) -> Option<Result<(String, String, String), String>> {
    let inner = text.trim().strip_prefix("${vault:")?.strip_suffix('}')?;
    let parsed = (|| {
        let (location, field) = inner.split_once('#').ok_or("missing #FIELD")?;
        let (mount, path) = location.split_once('/').ok_or("missing the mount (MOUNT/PATH#FIELD)")?;
        MountName::new(mount).map_err(|e| format!("mount {mount:?}: {e}"))?;
        SecretPath::new(path).map_err(|e| format!("path {path:?}: {e}"))?;
        if field.is_empty() {
            return Err("empty FIELD".to_owned());
        }
        Ok((mount.to_owned(), path.to_owned(), field.to_owned()))
    })();
    Some(parsed.map_err(|e: String| format!("{text:?}: {e}")))
}

/// Every secret reference in the contracts under `dir`, or the problems found.
pub fn scan(dir: &Path) -> Result<Vec<SecretRef>, Vec<String>> {
    let mut files = Vec::new();
    collect_yaml_files(dir, &mut files).map_err(|e| vec![format!("{}: {e}", dir.display())])?;
    files.sort();
    let mut problems = Vec::new();
    let mut found: Vec<SecretRef> = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        let tree: serde_yaml::Value = match serde_yaml::from_str(&text) {
            Ok(tree) => tree,
            Err(e) => {
                problems.push(format!("{}: not YAML: {e}", file.display()));
                continue;
            }
        };
        walk(&tree, &mut Vec::new(), &file.display().to_string(), &mut found, &mut problems);
    }
    let mut by_name: BTreeMap<&str, &SecretRef> = BTreeMap::new();
    for reference in &found {
        if let Some(earlier) = by_name.insert(&reference.variable, reference) {
            if earlier.target() != reference.target() {
                problems.push(format!(
                    "{}: {} ({}) and {} ({}) name different secrets",
                    reference.variable,
                    earlier.origin,
                    earlier.target(),
                    reference.origin,
                    reference.target()
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    found.sort_by(|a, b| a.variable.cmp(&b.variable));
    found.dedup_by(|a, b| a.variable == b.variable);
    Ok(found)
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

fn walk(
    value: &serde_yaml::Value,
    keys: &mut Vec<String>,
    file: &str,
    found: &mut Vec<SecretRef>,
    problems: &mut Vec<String>,
) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (key, value) in map {
                let key = match key {
                    serde_yaml::Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap_or_default().trim().to_owned(),
                };
                keys.push(key);
                walk(value, keys, file, found, problems);
                keys.pop();
            }
        }
        serde_yaml::Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                keys.push(i.to_string());
                walk(item, keys, file, found, problems);
                keys.pop();
            }
        }
        serde_yaml::Value::String(text) => match parse_reference(text) {
            Some(Ok((mount, path, field))) => found.push(SecretRef {
                variable: variable_name(keys),
                mount,
                path,
                field,
                origin: format!("{file}: {}", keys.join(".")),
            }),
            Some(Err(problem)) => problems.push(format!("{file}: {}: {problem}", keys.join("."))),
            None if text.contains("${vault:") => {
                problems.push(format!("{file}: {}: a ${{vault:…}} reference must be the whole value", keys.join(".")))
            }
            None => {}
        },
        _ => {}
    }
}

fn variable_name(keys: &[String]) -> String {
    keys.join("_").chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// How each variable was resolved.
#[derive(Debug)]
pub enum Resolution {
    /// From the secret in Vault.
    Vault(String),
    /// From the existing environment, because Vault could not give it (the reason).
    Environment(String, String),
    /// Nothing: the reason.
    Unresolved(String),
}

/// Fetches every referenced secret through the node (one batch per mount)
/// and picks the fields.
pub async fn fetch(
    client: &VaultAdapterClient,
    refs: &[SecretRef],
    fallback_env: bool,
) -> Result<Vec<(SecretRef, Resolution)>, ClientError> {
    let mut by_mount: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in refs {
        let paths = by_mount.entry(&r.mount).or_default();
        if !paths.contains(&r.path.as_str()) {
            paths.push(&r.path);
        }
    }
    // (mount, path) → the secret's data, or why it could not be read.
    let mut secrets: BTreeMap<(String, String), Result<serde_json::Map<String, Value>, String>> = BTreeMap::new();
    for (mount, paths) in by_mount {
        for chunk in paths.chunks(onex_vault_models::MAX_BATCH_PATHS.min(64)) {
            let batch = GetSecretsBatch {
                mount: Some(MountName::new(mount).map_err(|e| ClientError::Invalid(e.to_string()))?),
                paths: chunk
                    .iter()
                    .map(|p| SecretPath::new(*p))
                    .collect::<Result<_, _>>()
                    .map_err(|e| ClientError::Invalid(e.to_string()))?,
                consistency: Default::default(),
                delivery: None,
            };
            let OperationResult::GetSecretsBatch(result) = client.call(VaultRequest::GetSecretsBatch(batch)).await?
            else {
                return Err(ClientError::UnexpectedResult);
            };
            for item in result.results {
                let read = match (item.data, item.error) {
                    (Some(data), _) => Ok(data.expose_secret().clone()),
                    (None, Some(error)) => Err(error.code.to_string()),
                    (None, None) => Err("no data".to_owned()),
                };
                secrets.insert((mount.to_owned(), item.path), read);
            }
        }
    }
    Ok(refs
        .iter()
        .map(|r| {
            let value = match secrets.get(&(r.mount.clone(), r.path.clone())) {
                Some(Ok(data)) => match data.get(&r.field) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(other) => Ok(other.to_string()),
                    None => Err(format!("no field {:?}", r.field)),
                },
                Some(Err(reason)) => Err(reason.clone()),
                None => Err("not read".to_owned()),
            };
            let resolution = match value {
                Ok(value) => Resolution::Vault(value),
                Err(reason) => match std::env::var(&r.variable).ok().filter(|_| fallback_env) {
                    Some(value) => Resolution::Environment(value, reason),
                    None => Resolution::Unresolved(reason),
                },
            };
            (r.clone(), resolution)
        })
        .collect())
}

/// `NAME='value'` lines, single-quoted for POSIX shells and env-file readers.
pub fn env_file_text(values: &[(String, String)]) -> String {
    values.iter().map(|(name, value)| format!("{name}='{}'\n", value.replace('\'', r"'\''"))).collect()
}

#[derive(clap::Args)]
pub struct ResolveArgs {
    /// Directory of ONEX contract files to scan (recursively, *.yaml and *.yml).
    #[arg(long)]
    contracts: PathBuf,
    /// Write the variables to this file (mode 0600) instead of running a command.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// List what would be fetched, fetch nothing.
    #[arg(long)]
    dry_run: bool,
    /// When a secret cannot be resolved, use the variable already in the
    /// environment, if set (reported per variable).
    #[arg(long)]
    fallback_env: bool,
    #[command(flatten)]
    bus: crate::request_cli::BusArgs,
    /// The command to run with the variables in its environment (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

/// Exit codes: 0 resolved (and the command's own code when one runs);
/// 1 some variable unresolved; 2 bad usage, bad contracts, or no answer.
pub fn run(args: ResolveArgs) -> ExitCode {
    let fail = |code: u8, problem: String| {
        eprintln!("resolve: {problem}");
        ExitCode::from(code)
    };
    let refs = match scan(&args.contracts) {
        Ok(refs) => refs,
        Err(problems) => return fail(2, problems.join("\n  ")),
    };
    if args.dry_run {
        for r in &refs {
            println!("{}\t{}\t({})", r.variable, r.target(), r.origin);
        }
        return ExitCode::SUCCESS;
    }
    if args.env_file.is_none() && args.command.is_empty() {
        return fail(2, "give --env-file PATH, a command after --, or --dry-run".into());
    }
    let settings = match args.bus.client_settings() {
        Ok(settings) => settings,
        Err(problem) => return fail(2, problem),
    };
    let outcome = tokio::runtime::Runtime::new().map_err(|e| ClientError::Invalid(e.to_string())).and_then(|rt| {
        rt.block_on(async {
            let client = VaultAdapterClient::connect(settings).await?;
            fetch(&client, &refs, args.fallback_env).await
        })
    });
    let resolved = match outcome {
        Ok(resolved) => resolved,
        Err(error) => return fail(2, format!("no answer from the node: {error}")),
    };
    let mut values = Vec::new();
    let mut unresolved = 0;
    for (r, resolution) in resolved {
        match resolution {
            Resolution::Vault(value) => {
                eprintln!("{}: from {}", r.variable, r.target());
                values.push((r.variable, value));
            }
            Resolution::Environment(value, reason) => {
                eprintln!("{}: from the environment ({} failed: {reason})", r.variable, r.target());
                values.push((r.variable, value));
            }
            Resolution::Unresolved(reason) => {
                eprintln!("{}: UNRESOLVED ({}: {reason})", r.variable, r.target());
                unresolved += 1;
            }
        }
    }
    if unresolved > 0 {
        return fail(1, format!("{unresolved} variable(s) unresolved; nothing written or run"));
    }
    if let Some(path) = &args.env_file {
        if let Err(error) = write_env_file(path, &env_file_text(&values)) {
            return fail(2, format!("cannot write {}: {error}", path.display()));
        }
        eprintln!("wrote {} variable(s) to {} (mode 0600)", values.len(), path.display());
    }
    if let Some((program, rest)) = args.command.split_first() {
        use std::os::unix::process::CommandExt as _;
        let error = std::process::Command::new(program).args(rest).envs(values).exec();
        return fail(2, format!("cannot run {program}: {error}"));
    }
    ExitCode::SUCCESS
}

/// Replaces `path` with `text`, readable by its owner only: written beside
/// it, then renamed over it.
fn write_env_file(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-resolve");
    let _ = std::fs::remove_file(&tmp);
    crate::requester::write_private_file(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_text(files: &[(&str, &str)]) -> Result<Vec<SecretRef>, Vec<String>> {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
            std::fs::write(path, text).expect("write");
        }
        scan(dir.path())
    }

    #[test]
    fn references_become_variables_named_by_their_key_path() {
        let refs = scan_text(&[
            ("a/contract.yaml", "database:\n  password: ${vault:secret/orders/db#password}\n  user: app\n"),
            ("b.yml", "api-keys:\n  - ${vault:kv/shared/stripe#key}\nsame: ${vault:secret/orders/db#password}\n"),
            ("notes.txt", "ignored: ${vault:secret/x#y}"),
        ])
        .expect("scans");
        let found: Vec<(String, String)> = refs.iter().map(|r| (r.variable.clone(), r.target())).collect();
        assert_eq!(
            found,
            vec![
                ("API_KEYS_0".to_owned(), "kv/shared/stripe#key".to_owned()),
                ("DATABASE_PASSWORD".to_owned(), "secret/orders/db#password".to_owned()),
                ("SAME".to_owned(), "secret/orders/db#password".to_owned()),
            ]
        );
    }

    #[test]
    fn bad_references_and_clashing_names_are_reported() {
        let problems = scan_text(&[(
            "c.yaml",
            "a: ${vault:secret/../etc#x}\nb: ${vault:nomount#x}\nc: prefix-${vault:secret/a#b}\nd: ${vault:secret/a#}\n",
        )])
        .expect_err("refused");
        assert_eq!(problems.len(), 4, "{problems:#?}");
        let clash =
            scan_text(&[("x.yaml", "db:\n  pw: ${vault:secret/a#p}\n"), ("y.yaml", "db_pw: ${vault:secret/b#p}\n")])
                .expect_err("clash");
        assert!(clash[0].contains("DB_PW") && clash[0].contains("name different secrets"), "{clash:?}");
    }

    #[test]
    fn env_file_values_are_quoted() {
        let text = env_file_text(&[("A".into(), "it's $HOME".into())]);
        assert_eq!(text, "A='it'\\''s $HOME'\n");
    }
}
