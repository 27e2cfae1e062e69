//! The endpoints file as a key of a Kubernetes ConfigMap, for the reconcile
//! CronJob: the private gate's pods mount that ConfigMap and reload the
//! file when the kubelet updates it.
//!
//! The client is configured the standard way: in a pod, from the service
//! account's token and namespace; elsewhere, from `KUBECONFIG` or
//! `~/.kube/config`.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use postern::config::Endpoints;

use crate::endpoints_file::WriteOutcome;

/// The field manager that the API server records for the patch.
const FIELD_MANAGER: &str = "postern-reconcile";

/// A ConfigMap that holds the endpoints file under one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// `None` for the client's default namespace.
    pub namespace: Option<String>,
    pub key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigMapError {
    #[error(
        "cannot configure a Kubernetes client: {0}; run in a pod with a service account, or set \
         KUBECONFIG"
    )]
    Client(#[source] kube::Error),
    #[error("{verb} of ConfigMap {namespace}/{name} failed: {source}{hint}")]
    Call {
        verb: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
        hint: &'static str,
    },
    #[error("the endpoints file for ConfigMap {0} would not load in the private gate: {1}")]
    Invalid(String, String),
}

/// Writes `text` under the target's key with a merge patch, unless the
/// ConfigMap already contains exactly this text there. The ConfigMap must
/// exist: `postern render` writes it, with an empty list.
pub async fn write(target: &Target, text: &str) -> Result<WriteOutcome, ConfigMapError> {
    if let Err(problems) = Endpoints::from_text(std::path::Path::new(&target.key), text) {
        return Err(ConfigMapError::Invalid(
            target.name.clone(),
            problems.to_string(),
        ));
    }
    let client = kube::Client::try_default()
        .await
        .map_err(ConfigMapError::Client)?;
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let call_error = |verb, source| {
        let hint = hint(&source);
        ConfigMapError::Call {
            verb,
            namespace: namespace.clone(),
            name: target.name.clone(),
            source,
            hint,
        }
    };

    let current = api
        .get(&target.name)
        .await
        .map_err(|e| call_error("get", e))?;
    let unchanged = current
        .data
        .as_ref()
        .and_then(|data| data.get(&target.key))
        .is_some_and(|current| current == text);
    if unchanged {
        return Ok(WriteOutcome::Unchanged);
    }

    let patch = serde_json::json!({ "data": { target.key.as_str(): text } });
    api.patch(
        &target.name,
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| call_error("patch", e))?;
    Ok(WriteOutcome::Written)
}

/// Suggests the fix for the API server's usual refusals.
fn hint(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(response) if response.code == 403 => {
            "; the service account needs get and patch on this ConfigMap, as the Role that \
             `postern render` writes grants"
        }
        kube::Error::Api(response) if response.code == 404 => {
            "; apply the manifests of `postern render`, which create it"
        }
        _ => "",
    }
}
