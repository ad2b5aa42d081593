//! The access policy as the gate uses it: requesters with their parsed keys
//! and grants, and the path patterns grants are written in. Default deny.

use std::collections::{BTreeMap, BTreeSet};

use onex_vault_models::{is_reserved_mount, DenialReason, Namespace, Operation, RuntimeKey, SealingPublicKey};

use crate::contract::{AccessPolicySettings, KeyRef, RequesterPolicy};

/// Every requester the node knows, by the `runtime_id` of its signing runtime.
#[derive(Debug, Default)]
pub struct AccessPolicy {
    requesters: BTreeMap<String, Requester>,
}

#[derive(Debug)]
pub struct Requester {
    /// By key id (operators' bookkeeping; any of them may sign).
    signing_keys: BTreeMap<String, RuntimeKey>,
    pub sealing_key: Option<SealingPublicKey>,
    pub clear_delivery: bool,
    pub wrapped_delivery: bool,
    /// Namespaces its requests may name, relative to the node's (the empty
    /// pattern: the node's own).
    namespaces: Vec<PathPattern>,
    grants: Vec<Grant>,
}

#[derive(Debug)]
struct Grant {
    operations: BTreeSet<Operation>,
    /// `None`: any mount.
    mounts: Option<BTreeSet<String>>,
    paths: Vec<PathPattern>,
}

/// A folder's name as a `list_secrets` check probes it: no validated path
/// holds a control character, so only `*` and `**` segments match it.
const ANY_NAME: &str = "\u{1}";

/// Why the grants do not cover a request, most general first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotGranted {
    Namespace,
    Operation,
    Mount,
    Path,
}

impl NotGranted {
    pub fn reason(self) -> DenialReason {
        match self {
            NotGranted::Namespace => DenialReason::NamespaceNotGranted,
            NotGranted::Operation => DenialReason::OperationNotGranted,
            NotGranted::Mount => DenialReason::MountNotGranted,
            NotGranted::Path => DenialReason::PathNotGranted,
        }
    }
}

impl AccessPolicy {
    /// The policy of a validated contract (keys and patterns already checked;
    /// anything unusable is left out, never widened).
    pub fn from_settings(settings: &AccessPolicySettings, default_mount: &str) -> AccessPolicy {
        let requesters = settings
            .requesters
            .iter()
            .map(|r| (r.runtime_id.clone(), Requester::from_settings(r, default_mount)))
            .collect();
        AccessPolicy { requesters }
    }

    pub fn requester(&self, name: &str) -> Option<&Requester> {
        self.requesters.get(name)
    }

    pub fn len(&self) -> usize {
        self.requesters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requesters.is_empty()
    }

    /// Adds keys kept elsewhere (Vault) to the requesters the contract names;
    /// returns the names it did not know.
    pub fn add_keys(&mut self, extra: &[RequesterPolicy]) -> Vec<String> {
        let mut unknown = Vec::new();
        for more in extra {
            let Some(requester) = self.requesters.get_mut(&more.runtime_id) else {
                unknown.push(more.runtime_id.clone());
                continue;
            };
            requester.signing_keys.extend(verifying_keys(&more.signing_keys));
            if let Some(key) = more.sealing_key.as_ref().and_then(sealing_key) {
                requester.sealing_key = Some(key);
            }
        }
        unknown
    }
}

impl Requester {
    fn from_settings(settings: &RequesterPolicy, default_mount: &str) -> Requester {
        Requester {
            signing_keys: verifying_keys(&settings.signing_keys),
            sealing_key: settings.sealing_key.as_ref().and_then(sealing_key),
            clear_delivery: settings.clear_delivery,
            wrapped_delivery: settings.wrapped_delivery,
            namespaces: match &settings.namespaces {
                None => vec![PathPattern(Vec::new())],
                Some(patterns) => patterns.iter().filter_map(|p| PathPattern::parse(p).ok()).collect(),
            },
            grants: settings
                .grants
                .iter()
                .map(|g| Grant {
                    operations: g.operations.iter().copied().collect(),
                    mounts: match g.mounts.as_slice() {
                        [] => Some(BTreeSet::from([default_mount.to_owned()])),
                        mounts if mounts.iter().any(|m| m == "*") => None,
                        mounts => Some(mounts.iter().cloned().collect()),
                    },
                    paths: g.paths.iter().filter_map(|p| PathPattern::parse(p).ok()).collect(),
                })
                .collect(),
        }
    }

    /// The keys its envelopes may be signed with.
    pub fn signing_keys(&self) -> impl Iterator<Item = &RuntimeKey> {
        self.signing_keys.values()
    }

    /// Whether the requester may use `namespace` (relative to the node's;
    /// `None`: the node's own), and some grant allows `operation` on every
    /// one of `paths` in `mount` (`None` for lease and token operations). A mount wildcard
    /// never covers a reserved mount (see `onex_vault_models::RESERVED_MOUNTS`). Listing a
    /// folder shows the names in it, so a `list_secrets` grant covers a
    /// folder only when its pattern covers every name directly in it: the
    /// names its `get_secret` grant of the same pattern covers.
    pub fn allows(
        &self,
        operation: Operation,
        namespace: Option<&Namespace>,
        mount: Option<&str>,
        paths: &[String],
    ) -> Result<(), NotGranted> {
        let namespace = namespace.map_or("", Namespace::as_str);
        if !self.namespaces.iter().any(|pattern| pattern.matches(namespace)) {
            return Err(NotGranted::Namespace);
        }
        let for_operation: Vec<&Grant> = self.grants.iter().filter(|g| g.operations.contains(&operation)).collect();
        if for_operation.is_empty() {
            return Err(NotGranted::Operation);
        }
        let in_mount: Vec<&Grant> = for_operation
            .into_iter()
            .filter(|g| match (mount, &g.mounts) {
                (Some(mount), Some(mounts)) => mounts.contains(mount),
                (Some(mount), None) => !is_reserved_mount(mount),
                (None, _) => true,
            })
            .collect();
        if in_mount.is_empty() {
            return Err(NotGranted::Mount);
        }
        let listed =
            |folder: &String| format!("{}/{ANY_NAME}", folder.trim_end_matches('/')).trim_start_matches('/').to_owned();
        let probe = |path: &String| if operation == Operation::ListSecrets { listed(path) } else { path.clone() };
        let covered = |path: &String| in_mount.iter().any(|g| g.paths.iter().any(|p| p.matches(&probe(path))));
        if paths.iter().all(covered) {
            Ok(())
        } else {
            Err(NotGranted::Path)
        }
    }
}

fn verifying_keys(keys: &[KeyRef]) -> BTreeMap<String, RuntimeKey> {
    keys.iter().filter_map(|k| Some((k.id.clone(), RuntimeKey::from_base64(&k.public_key).ok()?))).collect()
}

fn sealing_key(key: &KeyRef) -> Option<SealingPublicKey> {
    SealingPublicKey::from_base64(&key.id, &key.public_key).ok()
}

/// A path pattern of a grant: segments split on `/`; `*` inside a segment
/// matches any characters of that segment; a `**` segment matches any number
/// of segments, none included. `billing/*` matches `billing/db`, not
/// `billing/db/replica`; `shared/database/**` matches everything under it.
#[derive(Debug, Clone)]
pub struct PathPattern(Vec<Segment>);

#[derive(Debug, Clone)]
enum Segment {
    Any,
    Glob(String),
}

impl PathPattern {
    pub fn parse(pattern: &str) -> Result<PathPattern, &'static str> {
        let pattern = pattern.trim_end_matches('/');
        if pattern.is_empty() {
            return Ok(PathPattern(Vec::new()));
        }
        if pattern.starts_with('/') {
            return Err("must not start with '/'");
        }
        let mut segments = Vec::new();
        for segment in pattern.split('/') {
            match segment {
                "" => return Err("has an empty segment"),
                "**" => segments.push(Segment::Any),
                s if s.contains("**") => return Err("uses ** inside a segment (it must be a whole segment)"),
                s => segments.push(Segment::Glob(s.to_owned())),
            }
        }
        Ok(PathPattern(segments))
    }

    /// Whether `path` (a validated secret or folder path, or a lease id)
    /// matches. A trailing `/` of a folder is ignored.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        let segments: Vec<&str> = if path.is_empty() { Vec::new() } else { path.split('/').collect() };
        match_segments(&self.0, &segments)
    }
}

fn match_segments(pattern: &[Segment], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::Any, rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((Segment::Glob(glob), rest)) => {
            path.split_first().is_some_and(|(first, tail)| glob_matches(glob, first) && match_segments(rest, tail))
        }
    }
}

/// `*` matches any run of characters (within one segment).
fn glob_matches(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use onex_vault_models::RESERVED_MOUNTS;

    fn matches(pattern: &str, path: &str) -> bool {
        PathPattern::parse(pattern).expect("valid pattern").matches(path)
    }

    #[test]
    fn one_star_is_one_segment() {
        assert!(matches("billing/*", "billing/db"));
        assert!(!matches("billing/*", "billing/db/replica"));
        assert!(!matches("billing/*", "billing"));
        assert!(!matches("billing/*", "billingx/db"));
        assert!(matches("billing/db-*", "billing/db-main"));
        assert!(!matches("billing/db-*", "billing/cache"));
        assert!(matches("*/config", "app/config"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
    }

    #[test]
    fn two_stars_are_any_depth() {
        assert!(matches("shared/database/**", "shared/database/pg/main"));
        assert!(matches("shared/database/**", "shared/database"));
        assert!(matches("shared/database/**", "shared/database/"));
        assert!(!matches("shared/database/**", "shared/databases/pg"));
        assert!(matches("**/creds", "database/creds"));
        assert!(matches("**", ""));
        assert!(matches("**", "anything/at/all"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(PathPattern::parse("/abs").is_err());
        assert!(PathPattern::parse("a//b").is_err());
        assert!(PathPattern::parse("a/b**").is_err());
    }

    impl Requester {
        /// `allows` in the node's own namespace.
        fn allows_here(&self, operation: Operation, mount: Option<&str>, paths: &[String]) -> Result<(), NotGranted> {
            self.allows(operation, None, mount, paths)
        }
    }

    #[test]
    fn namespaces_are_granted_per_requester_the_nodes_own_by_default() {
        let grants: Vec<crate::contract::Grant> =
            serde_yaml::from_str("[{ operations: [get_secret], paths: [\"**\"] }]").expect("grants");
        let with = |namespaces: Option<Vec<&str>>| {
            Requester::from_settings(
                &RequesterPolicy {
                    runtime_id: "node_billing".into(),
                    signing_keys: vec![],
                    sealing_key: None,
                    clear_delivery: false,
                    wrapped_delivery: false,
                    namespaces: namespaces.map(|n| n.into_iter().map(str::to_owned).collect()),
                    grants: grants.clone(),
                },
                "secret",
            )
        };
        let ns = |name: &str| Namespace::new(name).expect("valid namespace");
        let paths = vec!["a/b".to_owned()];
        let ask = |r: &Requester, namespace: Option<Namespace>| {
            r.allows(Operation::GetSecret, namespace.as_ref(), Some("secret"), &paths)
        };
        let default = with(None);
        assert_eq!(ask(&default, None), Ok(()));
        assert_eq!(ask(&default, Some(ns("app"))), Err(NotGranted::Namespace));
        let tenants = with(Some(vec!["app", "billing/*"]));
        assert_eq!(ask(&tenants, Some(ns("app"))), Ok(()));
        assert_eq!(ask(&tenants, Some(ns("billing/eu"))), Ok(()));
        assert_eq!(ask(&tenants, Some(ns("billing"))), Err(NotGranted::Namespace));
        assert_eq!(ask(&tenants, Some(ns("billing/eu/x"))), Err(NotGranted::Namespace));
        assert_eq!(ask(&tenants, Some(ns("app2"))), Err(NotGranted::Namespace));
        assert_eq!(ask(&tenants, None), Err(NotGranted::Namespace), "a list given is the whole list");
        let everywhere = with(Some(vec!["", "**"]));
        assert_eq!(ask(&everywhere, None), Ok(()));
        assert_eq!(ask(&everywhere, Some(ns("a/b/c"))), Ok(()));
        assert_eq!(
            everywhere.allows(Operation::SetSecret, Some(&ns("app")), Some("secret"), &paths),
            Err(NotGranted::Operation),
            "grants still apply inside a granted namespace"
        );
    }

    fn requester(grants: &str) -> Requester {
        let grants: Vec<crate::contract::Grant> = serde_yaml::from_str(grants).expect("grants");
        let settings = RequesterPolicy {
            runtime_id: "node_billing".into(),
            signing_keys: vec![],
            sealing_key: None,
            clear_delivery: false,
            wrapped_delivery: false,
            namespaces: None,
            grants,
        };
        Requester::from_settings(&settings, "secret")
    }

    #[test]
    fn a_list_grant_shows_only_the_names_its_get_grant_covers_and_wildcards_skip_reserved_mounts() {
        let r = requester(
            r#"
            - { operations: [get_secret, list_secrets], mounts: ["*"], paths: ["billing/*", "shared/**", "app/db*"] }
            "#,
        );
        let paths = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let list = |folder: &str| r.allows_here(Operation::ListSecrets, Some("secret"), &paths(&[folder]));
        assert_eq!(list("billing/"), Ok(()), "names billing/x are covered by billing/*");
        assert_eq!(list("billing/db/"), Err(NotGranted::Path), "billing/db/x is one level deeper than billing/*");
        assert_eq!(list("shared/a/b/"), Ok(()));
        assert_eq!(list("app/"), Err(NotGranted::Path), "app/db* covers some names of app/, not all");
        assert_eq!(list(""), Err(NotGranted::Path));
        for reserved in RESERVED_MOUNTS.iter().copied().chain(["auth/token", "sys/raw"]) {
            assert_eq!(
                r.allows_here(Operation::GetSecret, Some(reserved), &paths(&["billing/db"])),
                Err(NotGranted::Mount),
                "{reserved}"
            );
        }
        assert_eq!(r.allows_here(Operation::GetSecret, Some("kv"), &paths(&["billing/db"])), Ok(()));
    }

    #[test]
    fn grants_check_operation_then_mount_then_every_path() {
        let r = requester(
            r#"
            - { operations: [get_secret, get_secrets_batch], paths: ["billing/*"] }
            - { operations: [list_secrets], mounts: ["kv"], paths: ["**"] }
            - { operations: [renew_token] }
            - { operations: [renew_lease], paths: ["database/creds/billing/*"] }
            "#,
        );
        let paths = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(r.allows_here(Operation::GetSecret, Some("secret"), &paths(&["billing/db"])), Ok(()));
        assert_eq!(r.allows_here(Operation::GetSecret, Some("secret"), &paths(&["payroll/db"])), Err(NotGranted::Path));
        assert_eq!(r.allows_here(Operation::GetSecret, Some("kv"), &paths(&["billing/db"])), Err(NotGranted::Mount));
        assert_eq!(
            r.allows_here(Operation::SetSecret, Some("secret"), &paths(&["billing/db"])),
            Err(NotGranted::Operation)
        );
        assert_eq!(
            r.allows_here(Operation::GetSecretsBatch, Some("secret"), &paths(&["billing/a", "payroll/b"])),
            Err(NotGranted::Path)
        );
        assert_eq!(r.allows_here(Operation::ListSecrets, Some("kv"), &paths(&[""])), Ok(()));
        assert_eq!(r.allows_here(Operation::ListSecrets, Some("kv"), &paths(&["a/b/"])), Ok(()));
        assert_eq!(r.allows_here(Operation::RenewToken, None, &[]), Ok(()));
        assert_eq!(r.allows_here(Operation::RenewLease, None, &paths(&["database/creds/billing/x1"])), Ok(()));
        assert_eq!(
            r.allows_here(Operation::RenewLease, None, &paths(&["database/creds/admin/x1"])),
            Err(NotGranted::Path)
        );
    }
}
