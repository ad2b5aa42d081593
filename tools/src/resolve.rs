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
//!
//! # Safety rules
//!
//! Contracts are written by service authors, not by whoever runs `resolve`,
//! so nothing in them may change how the service's programs run:
//!
//! - **Denied names.** A reference whose variable would be one of
//!   [`DENIED_NAMES`] (`PATH`, `HOME`, `SHELL`, `IFS`, `ENV`, `BASH_ENV`,
//!   `CLASSPATH`, `JAVA_TOOL_OPTIONS`, `SSL_CERT_FILE`, `HTTPS_PROXY`,
//!   `EDITOR`, …), start with one of [`DENIED_PREFIXES`] (`LD_`, `DYLD_`,
//!   `BASH_`, `PYTHON`, `PERL`, `RUBY`, `NODE_`, `GIT_`, `XDG_`, …: the
//!   dynamic loader's, the shells' and the interpreters' own namespaces), or
//!   is no valid shell name (empty, or starting with a digit) refuses the
//!   whole run (exit 1, naming the contract file and key path; nothing is
//!   written, fetched or run), `--dry-run` included. Rename the key.
//! - **Values.** The env file holds `NAME='value'` lines, single-quoted with
//!   `'` written as `'\''`: sourced by a POSIX shell (`. service.env`) it
//!   gives every value back byte for byte, newlines (a value may span
//!   lines, e.g. a PEM key), quotes, `\`, `$`, backticks and trailing
//!   newlines included; nothing in a value is expanded or run. A value with a
//!   NUL byte, which no environment variable can carry, is refused (exit 1,
//!   nothing written or run).
//! - **The command's environment.** The exec'd command gets the resolver's
//!   environment minus [`RESOLVER_VARIABLES`] (everything `resolve` reads
//!   to reach the node: `KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_SECURITY_PROTOCOL`,
//!   `KAFKA_SASL_*`, `KAFKA_SSL_*`, `ONEX_IDENTITY_FILE`, `ONEX_REALM`,
//!   `ONEX_NODE_*`; and Vault credentials: `VAULT_TOKEN`, `VAULT_ROLE_ID*`,
//!   `VAULT_SECRET_ID*`), plus the resolved variables. A contract may still
//!   name one of those variables and have it set from Vault, but
//!   `--fallback-env` never fills it from the resolver's own value.
//! - **The walk** follows symbolic links (a contracts directory may be a
//!   link, e.g. a Kubernetes ConfigMap volume) but enters each directory, by
//!   its canonical path, once: a link cycle ends the walk there.
//!
//! Over 500 lines with its unit tests: scanning contracts, fetching through
//! the node and writing the env file or exec'ing belong to one command.

use std::collections::{BTreeMap, HashSet};
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
    collect_yaml_files(dir, &mut HashSet::new(), &mut files).map_err(|e| vec![format!("{}: {e}", dir.display())])?;
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

/// The `*.yaml` / `*.yml` files under `dir`, following symbolic links but
/// entering each directory (by its canonical path) once, so that a link
/// cycle cannot make the walk endless.
fn collect_yaml_files(dir: &Path, visited: &mut HashSet<PathBuf>, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !visited.insert(std::fs::canonicalize(dir)?) {
        return Ok(());
    }
    let mut paths = std::fs::read_dir(dir)?.map(|entry| entry.map(|e| e.path())).collect::<Result<Vec<_>, _>>()?;
    // A directory reached by two paths is walked under the first in name order.
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_yaml_files(&path, visited, out)?;
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

/// Variable names no contract may set: each changes how a shell, the
/// dynamic loader, an interpreter or a library behaves (what runs, what is
/// loaded, which certificates or proxies are trusted). See also
/// [`DENIED_PREFIXES`].
pub const DENIED_NAMES: &[&str] = &[
    // Shells and the programs they find.
    "PATH",
    "HOME",
    "SHELL",
    "IFS",
    "ENV",
    "CDPATH",
    "PS4",
    "PROMPT_COMMAND",
    "SHELLOPTS",
    "BASHOPTS",
    "GLOBIGNORE",
    "ZDOTDIR",
    "TMPDIR",
    // The C library.
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "RES_OPTIONS",
    "LOCALDOMAIN",
    "MALLOC_CONF",
    // Interpreters and virtual machines.
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "JAVA_OPTIONS",
    "CLASSPATH",
    "GEM_HOME",
    "GEM_PATH",
    "LUA_PATH",
    "LUA_CPATH",
    "TCLLIBPATH",
    "DOTNET_STARTUP_HOOKS",
    "CORECLR_PROFILER_PATH",
    // Trust and proxies.
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "OPENSSL_CONF",
    "OPENSSL_MODULES",
    "OPENSSL_ENGINES",
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "FTP_PROXY",
    // Programs other programs run.
    "EDITOR",
    "VISUAL",
    "PAGER",
    "LESSOPEN",
    "LESSCLOSE",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
];

/// Prefixes no contract's variable may start with: the dynamic loader's
/// (`LD_PRELOAD`, `LD_LIBRARY_PATH`, `DYLD_INSERT_LIBRARIES`), bash's
/// (`BASH_ENV`, `BASH_FUNC_*`), and the interpreters' (`PYTHONPATH`,
/// `PYTHONSTARTUP`, `PERL5LIB`, `PERL5OPT`, `RUBYOPT`, `RUBYLIB`,
/// `NODE_OPTIONS`, `NODE_PATH`, `NODE_TLS_REJECT_UNAUTHORIZED`,
/// `GIT_SSH_COMMAND`, `XDG_CONFIG_HOME`, …).
pub const DENIED_PREFIXES: &[&str] =
    &["LD_", "DYLD_", "BASH_", "PYTHON", "PERL", "RUBY", "NODE_", "GIT_", "XDG_", "DOTNET_", "CORECLR_", "MALLOC_"];

/// Why `name` may not be set from a contract, or `None` when it may.
pub fn denied_name(name: &str) -> Option<&'static str> {
    let valid = name.chars().next().is_some_and(|c| c == '_' || c.is_ascii_uppercase())
        && name.chars().all(|c| c == '_' || c.is_ascii_uppercase() || c.is_ascii_digit());
    if !valid {
        Some("not a valid variable name")
    } else if DENIED_NAMES.contains(&name) || DENIED_PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
        Some("a variable that changes how programs run")
    } else {
        None
    }
}

/// One problem per reference whose variable is denied (see [`denied_name`]).
pub fn denied_variables(refs: &[SecretRef]) -> Vec<String> {
    refs.iter()
        .filter_map(|r| {
            denied_name(&r.variable)
                .map(|why| format!("{} would set {:?}, {why}: refused (rename the key)", r.origin, r.variable))
        })
        .collect()
}

/// What `resolve` itself reads from its environment to reach the node, and
/// Vault credentials: never passed on to the command it runs (unless a
/// contract has the variable resolved from Vault), never taken for
/// `--fallback-env`.
pub const RESOLVER_VARIABLES: &[&str] = &[
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_SSL_CA_FILE",
    "KAFKA_SSL_CERTIFICATE_FILE",
    "KAFKA_SSL_KEY_FILE",
    "ONEX_IDENTITY_FILE",
    "ONEX_REALM",
    "ONEX_NODE_PUBLIC_KEY",
    "ONEX_NODE_RUNTIME_ID",
    "VAULT_TOKEN",
    "VAULT_ROLE_ID",
    "VAULT_ROLE_ID_FILE",
    "VAULT_SECRET_ID",
    "VAULT_SECRET_ID_FILE",
];

/// The command to exec: the resolver's environment minus
/// [`RESOLVER_VARIABLES`], plus `values`.
pub fn child_command(program: &str, args: &[String], values: &[(String, String)]) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command.args(args);
    for name in RESOLVER_VARIABLES {
        command.env_remove(name);
    }
    command.envs(values.iter().map(|(name, value)| (name, value)));
    command
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
                namespace: None,
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
                Err(reason) if fallback_env && RESOLVER_VARIABLES.contains(&r.variable.as_str()) => {
                    Resolution::Unresolved(format!("{reason}; the resolver's own {} is never passed on", r.variable))
                }
                Err(reason) => match std::env::var(&r.variable).ok().filter(|_| fallback_env) {
                    Some(value) => Resolution::Environment(value, reason),
                    None => Resolution::Unresolved(reason),
                },
            };
            (r.clone(), resolution)
        })
        .collect())
}

/// Why `value` cannot be handed over as an environment variable, or `None`.
pub fn unusable_value(value: &str) -> Option<&'static str> {
    value.contains('\0').then_some("the value holds a NUL byte, which no environment variable can carry")
}

/// `NAME='value'` lines, single-quoted for POSIX shells (`'` as `'\''`): a
/// value may span lines, and `. FILE` gives every value back byte for byte.
/// A value [`unusable_value`] refuses is an error naming the variable.
pub fn env_file_text(values: &[(String, String)]) -> Result<String, String> {
    let mut text = String::new();
    for (name, value) in values {
        if let Some(why) = denied_name(name) {
            return Err(format!("{name}: {why}"));
        }
        if let Some(why) = unusable_value(value) {
            return Err(format!("{name}: {why}"));
        }
        text.push_str(&format!("{name}='{}'\n", value.replace('\'', r"'\''")));
    }
    Ok(text)
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
    bus: crate::bus::BusArgs,
    /// The command to run with the variables in its environment (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

/// Exit codes: 0 resolved (and the command's own code when one runs);
/// 1 some variable unresolved or its value unusable, or a contract names a
/// denied variable; 2 bad usage, bad contracts, or no answer.
pub fn run(args: ResolveArgs) -> ExitCode {
    let fail = |code: u8, problem: String| {
        eprintln!("resolve: {problem}");
        ExitCode::from(code)
    };
    let refs = match scan(&args.contracts) {
        Ok(refs) => refs,
        Err(problems) => return fail(2, problems.join("\n  ")),
    };
    let denied = denied_variables(&refs);
    if !denied.is_empty() {
        return fail(1, format!("{}\nnothing fetched, written or run", denied.join("\n  ")));
    }
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
        let (value, from) = match resolution {
            Resolution::Vault(value) => (value, format!("from {}", r.target())),
            Resolution::Environment(value, reason) => {
                (value, format!("from the environment ({} failed: {reason})", r.target()))
            }
            Resolution::Unresolved(reason) => {
                eprintln!("{}: UNRESOLVED ({}: {reason})", r.variable, r.target());
                unresolved += 1;
                continue;
            }
        };
        match unusable_value(&value) {
            Some(why) => {
                eprintln!("{}: REFUSED ({}: {why})", r.variable, r.target());
                unresolved += 1;
            }
            None => {
                eprintln!("{}: {from}", r.variable);
                values.push((r.variable, value));
            }
        }
    }
    if unresolved > 0 {
        return fail(1, format!("{unresolved} variable(s) unresolved or refused; nothing written or run"));
    }
    if let Some(path) = &args.env_file {
        let text = match env_file_text(&values) {
            Ok(text) => text,
            Err(problem) => return fail(1, format!("{problem}; nothing written or run")),
        };
        if let Err(error) = write_env_file(path, &text) {
            return fail(2, format!("cannot write {}: {error}", path.display()));
        }
        eprintln!("wrote {} variable(s) to {} (mode 0600)", values.len(), path.display());
    }
    if let Some((program, rest)) = args.command.split_first() {
        use std::os::unix::process::CommandExt as _;
        let error = child_command(program, rest, &values).exec();
        return fail(2, format!("cannot run {program}: {error}"));
    }
    ExitCode::SUCCESS
}

/// Replaces `path` with `text`, readable by its owner only: written beside
/// it, then renamed over it.
fn write_env_file(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-resolve");
    let _ = std::fs::remove_file(&tmp);
    crate::identity::write_private_file(&tmp, text)?;
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
        let text = env_file_text(&[("A".into(), "it's $HOME".into())]).expect("quoted");
        assert_eq!(text, "A='it'\\''s $HOME'\n");
    }

    /// The value of `name` after `. file` in POSIX sh, as bytes.
    fn sourced(file: &Path, name: &str) -> Vec<u8> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(". \"$1\"; printf %s \"${name}\""))
            .arg("sh")
            .arg(file)
            .output()
            .expect("sh");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    #[test]
    fn env_file_values_survive_sourcing_byte_for_byte() {
        let values: Vec<(String, String)> = [
            "two\nlines",
            "it's",
            "say \"hi\"",
            "back\\slash\\n\\",
            "$(touch /tmp/resolve-pwned)",
            "`touch /tmp/resolve-pwned`",
            "trailing newline\n",
            "\n\n",
            "'",
            "''\\'\"",
            "cr\r\nlf",
            "${HOME} $HOME \\$HOME",
            "-----BEGIN KEY-----\nabc\n-----END KEY-----\n",
            "",
        ]
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("V{i}"), (*v).to_owned()))
        .collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("service.env");
        std::fs::write(&file, env_file_text(&values).expect("quoted")).expect("write");
        for (name, value) in &values {
            assert_eq!(sourced(&file, name), value.as_bytes(), "{name} = {value:?}");
        }
    }

    #[test]
    fn a_nul_byte_is_refused_not_dropped() {
        assert!(unusable_value("fine\nvalue").is_none());
        let problem = env_file_text(&[("OK".into(), "x".into()), ("BAD".into(), "a\0b".into())]).expect_err("refused");
        assert!(problem.contains("BAD") && problem.contains("NUL"), "{problem}");
    }

    #[test]
    fn dangerous_variable_names_are_denied() {
        for name in [
            "PATH",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "DYLD_INSERT_LIBRARIES",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "BASH_ENV",
            "BASH_FUNC_LS__",
            "ENV",
            "IFS",
            "HOME",
            "SHELL",
            "NODE_OPTIONS",
            "PERL5LIB",
            "PERL5OPT",
            "RUBYOPT",
            "JAVA_TOOL_OPTIONS",
            "GIT_SSH_COMMAND",
            "SSL_CERT_FILE",
            "HTTPS_PROXY",
            "GCONV_PATH",
        ] {
            assert!(denied_name(name).is_some(), "{name} must be denied");
        }
        for name in ["0", "1_PASSWORD", ""] {
            assert_eq!(denied_name(name), Some("not a valid variable name"), "{name:?}");
        }
        for name in ["DATABASE_PASSWORD", "API_KEYS_0", "PATHS", "HOME_DIR_TOKEN", "SHELLY", "ENVIRONMENT", "_X"] {
            assert_eq!(denied_name(name), None, "{name} is fine");
        }
        let refs = scan_text(&[(
            "svc/contract.yaml",
            "path: ${vault:secret/a#p}\nld:\n  preload: ${vault:secret/a#l}\ndb:\n  password: ${vault:secret/a#d}\n",
        )])
        .expect("scans");
        let denied = denied_variables(&refs);
        assert_eq!(denied.len(), 2, "{denied:#?}");
        assert!(denied.iter().any(|d| d.contains("svc/contract.yaml: ld.preload") && d.contains("LD_PRELOAD")));
        assert!(denied.iter().any(|d| d.contains("svc/contract.yaml: path") && d.contains("\"PATH\"")));
        assert!(env_file_text(&[("LD_PRELOAD".into(), "x".into())]).is_err());
    }

    #[test]
    fn the_command_gets_no_resolver_variables() {
        let values =
            [("DATABASE_PASSWORD".to_owned(), "pw".to_owned()), ("KAFKA_SASL_PASSWORD".to_owned(), "own".to_owned())];
        let command = child_command("env", &[], &values);
        let envs: BTreeMap<String, Option<String>> = command
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned())))
            .collect();
        for name in [
            "KAFKA_SASL_USERNAME",
            "KAFKA_SASL_PASSWORD_FILE",
            "ONEX_IDENTITY_FILE",
            "VAULT_TOKEN",
            "KAFKA_SSL_KEY_FILE",
        ] {
            assert_eq!(envs.get(name), Some(&None), "{name} is removed");
        }
        assert_eq!(envs.get("DATABASE_PASSWORD"), Some(&Some("pw".to_owned())));
        // A contract may have the service's own Kafka password resolved from Vault.
        assert_eq!(envs.get("KAFKA_SASL_PASSWORD"), Some(&Some("own".to_owned())));
    }

    /// `scan(dir)` on another thread: `None` when it has not finished in 20 s.
    fn scan_with_deadline(dir: &Path) -> Option<Result<Vec<SecretRef>, Vec<String>>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = dir.to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(scan(&dir));
        });
        rx.recv_timeout(std::time::Duration::from_secs(20)).ok()
    }

    #[test]
    fn a_symlink_cycle_ends_the_walk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("contracts");
        std::fs::create_dir_all(root.join("a/b")).expect("dirs");
        std::fs::write(root.join("a/contract.yaml"), "db:\n  password: ${vault:secret/a#p}\n").expect("write");
        std::fs::write(root.join("a/b/api.yml"), "api:\n  token: ${vault:secret/b#t}\n").expect("write");
        // Two ways back up at two levels: without cycle detection the walk
        // has 2^40 paths to follow before the kernel's link limit stops it.
        std::os::unix::fs::symlink("..", root.join("a/up")).expect("link");
        std::os::unix::fs::symlink("../..", root.join("a/b/up")).expect("link");
        std::os::unix::fs::symlink(&root, root.join("a/b/root")).expect("link");
        // A linked directory outside the tree is followed.
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).expect("dirs");
        std::fs::write(outside.join("linked.yaml"), "linked: ${vault:secret/c#l}\n").expect("write");
        std::os::unix::fs::symlink(&outside, root.join("shared")).expect("link");
        let refs = scan_with_deadline(&root).expect("the walk ends").expect("scans");
        let names: Vec<&str> = refs.iter().map(|r| r.variable.as_str()).collect();
        assert_eq!(names, ["API_TOKEN", "DB_PASSWORD", "LINKED"]);
    }
}
