//! `issue_credentials`: dynamic credentials from a secrets engine — one
//! read of an endpoint that answers with a lease (`database/creds/ROLE`,
//! `pki/issue/ROLE`, …). `GET` when the request has no `parameters`, else
//! `POST` with them as the JSON body. The answer's `data` is secret material
//! (delivered sealed, wrapped or clear like `get_secret`'s); its lease is
//! reported, and with `keep_alive` handed to the lease keeper.
//!
//! The lease sits at the top level of Vault's answer, beside `data`, so the
//! call goes through vaultrs with an endpoint of our own whose response is
//! the whole answer (`exec_with_no_result` strips nothing).
//!
//! Not idempotent: a retried attempt (a timeout, a 5xx) may have minted
//! credentials the requester never sees; they live until their TTL, as any
//! lease Vault hands out does.

use std::time::Duration;

use onex_vault_models::{IssueCredentials, IssueCredentialsResult, MountName, OperationResult, SecretData};
use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

/// Vault's whole answer: the lease beside the data.
#[derive(Deserialize)]
struct Leased {
    #[serde(default)]
    lease_id: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
    #[serde(default)]
    data: Option<Map<String, Value>>,
}

/// `GET <mount>/<path>`, or `POST` with `parameters` as the body.
struct EngineEndpoint<'a> {
    path: String,
    parameters: Option<&'a Map<String, Value>>,
}

impl Endpoint for EngineEndpoint<'_> {
    type Response = Leased;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        if self.parameters.is_some() {
            RequestMethod::POST
        } else {
            RequestMethod::GET
        }
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        self.parameters
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|source| rustify::errors::ClientError::DataParseError { source: source.into() })
    }
}

/// Whether issued `data` is an X.509 certificate: what PKI's `issue` and
/// `sign` endpoints answer (a PEM `certificate` and its `serial_number`).
pub fn is_certificate(data: &SecretData) -> bool {
    let data = data.expose_secret();
    data.get("certificate").and_then(Value::as_str).is_some_and(|pem| pem.contains("BEGIN CERTIFICATE"))
        && data.contains_key("serial_number")
}

impl Perform for IssueCredentials {
    const WORK: Work = Work::IssuesCredentials;

    fn target(&self, _default_mount: &MountName) -> Target {
        Target { namespace: None, mount: Some(self.mount.to_string()), paths: vec![self.path.to_string()] }
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        // Validated at decode already; checked again where the call is made.
        if self.check().is_err() {
            return Err(VaultError::status(403, &[]));
        }
        let endpoint = EngineEndpoint {
            path: format!("{}/{}", self.mount.as_str(), self.path.as_str()),
            parameters: self.parameters.as_ref(),
        };
        let client = cx.vault.client()?;
        let answer: Leased = vaultrs::api::exec_with_no_result(client.as_ref(), endpoint).await?;
        // An endpoint that answers without data (a 204, a write) issued nothing.
        let data = answer.data.ok_or(VaultError::Malformed)?;
        let lease_id = Some(answer.lease_id).filter(|id| !id.is_empty());
        let kept_alive = match &lease_id {
            Some(id) if self.keep_alive && answer.renewable => {
                cx.leases.track(id, cx.vault.namespace(), Duration::from_secs(answer.lease_duration)).await
            }
            _ => false,
        };
        Ok(OperationResult::IssueCredentials(IssueCredentialsResult {
            data: SecretData::new(data),
            lease_id,
            lease_duration: answer.lease_duration,
            renewable: answer.renewable,
            kept_alive,
        }))
    }
}
