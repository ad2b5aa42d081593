//! The workload: kinds of request, and the concrete requests they make.

use super::*;

/// A kind of request in the mix. To add one: a variant (and its place in
/// `ALL` and `name`), the [`Op`] it makes in `op`, how the node is asked for it
/// ([`Op::node_payload`]) and how Vault is asked directly ([`DirectVault::perform`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Get,
    Set,
    List,
    Batch,
}

/// Paths of one `batch` request.
pub(crate) const BATCH_PATHS: usize = 8;

impl Kind {
    pub(crate) const ALL: [Kind; 4] = [Kind::Get, Kind::Set, Kind::List, Kind::Batch];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Set => "set",
            Kind::List => "list",
            Kind::Batch => "batch",
        }
    }

    /// One request of this kind on the preloaded secrets, chosen at random.
    pub(crate) fn op(self, secrets: usize, rng: &mut StdRng) -> Op {
        match self {
            Kind::Get => Op::Get { path: secret_path(rng.random_range(0..secrets)) },
            Kind::Set => {
                let n = rng.random_range(0..secrets);
                Op::Set { path: secret_path(n), data: secret_data(n, rng) }
            }
            Kind::List => Op::List { folder: folder_path(rng.random_range(0..secrets.div_ceil(FOLDER_SIZE))) },
            Kind::Batch => {
                Op::Batch { paths: (0..BATCH_PATHS).map(|_| secret_path(rng.random_range(0..secrets))).collect() }
            }
        }
    }
}

/// One concrete request, asked of the node or of Vault.
pub(crate) enum Op {
    Get { path: String },
    Set { path: String, data: Value },
    List { folder: String },
    Batch { paths: Vec<String> },
}

impl Op {
    /// The Kafka record key: the secret path, as requesters key them (so the
    /// node keeps requests on one path in order).
    pub(crate) fn key(&self) -> &str {
        match self {
            Op::Get { path } | Op::Set { path, .. } => path,
            Op::List { folder } => folder,
            Op::Batch { paths } => paths.first().map_or("batch", String::as_str),
        }
    }

    /// The request envelope's `payload`.
    pub(crate) fn node_payload(&self) -> Value {
        match self {
            Op::Get { path } => json!({ "operation": "get_secret", "path": path }),
            Op::Set { path, data } => json!({ "operation": "set_secret", "path": path, "data": data }),
            Op::List { folder } => json!({ "operation": "list_secrets", "path": folder }),
            Op::Batch { paths } => json!({ "operation": "get_secrets_batch", "paths": paths }),
        }
    }
}

pub(crate) fn secret_path(n: usize) -> String {
    format!("{}/s{n:05}", folder_path(n / FOLDER_SIZE))
}

pub(crate) fn folder_path(folder: usize) -> String {
    format!("bench/f{folder:03}")
}

/// A secret's value: a user name and a fresh 24-character password.
pub(crate) fn secret_data(n: usize, rng: &mut StdRng) -> Value {
    let password: String = (0..24).map(|_| char::from(rng.sample(Alphanumeric))).collect();
    json!({ "username": format!("svc-{n}"), "password": password })
}

/// Weights of the kinds in the mix, e.g. `get=90,set=5,list=5`.
#[derive(Clone, Debug)]
pub(crate) struct Mix {
    pub(crate) weights: Vec<(Kind, u32)>,
}

impl Mix {
    pub(crate) fn parse(text: &str) -> Result<Mix, String> {
        let mut weights = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').ok_or(format!("--mix: {part:?} is not kind=weight"))?;
            let kind = Kind::ALL.into_iter().find(|k| k.name() == name.trim()).ok_or_else(|| {
                let known: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("--mix: unknown kind {name:?} (known: {})", known.join(", "))
            })?;
            let weight: u32 = weight.trim().parse().map_err(|_| format!("--mix: weight of {name} is not a number"))?;
            if weights.iter().any(|(k, _)| *k == kind) {
                return Err(format!("--mix: {name} given twice"));
            }
            weights.push((kind, weight));
        }
        if weights.iter().all(|(_, w)| *w == 0) {
            return Err("--mix: no kind has a weight above 0".into());
        }
        Ok(Mix { weights })
    }

    pub(crate) fn pick(&self, rng: &mut StdRng) -> Kind {
        let total: u32 = self.weights.iter().map(|(_, w)| w).sum();
        let mut ticket = rng.random_range(0..total);
        for (kind, weight) in &self.weights {
            if ticket < *weight {
                return *kind;
            }
            ticket -= weight;
        }
        unreachable!("the ticket is below the total weight")
    }

    pub(crate) fn describe(&self) -> String {
        self.weights.iter().map(|(k, w)| format!("{}={w}", k.name())).collect::<Vec<_>>().join(",")
    }
}
