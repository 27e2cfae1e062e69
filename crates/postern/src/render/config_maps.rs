//! `configmap.yaml`: the vars file, and the endpoints file the private gate
//! reads.

use serde_json::json;

use super::meta::{
    self, CONFIG_DIR, Component, ENDPOINTS_CONFIG_MAP, ENDPOINTS_KEY, VARS_CONFIG_MAP, VARS_KEY,
};
use super::{Document, Manifest, Options};
use crate::config::Config;

pub(super) const FILE_NAME: &str = "configmap.yaml";

/// The endpoints file before the first reconcile run: no endpoint is
/// admitted yet.
pub(super) const EMPTY_ENDPOINTS: &str = "endpoints: []\n";

pub(super) fn manifest(config: &Config, vars_text: &str, options: &Options) -> Manifest {
    let mut documents = vec![vars(vars_text, options)];
    if config.private.is_some() {
        documents.push(endpoints(options));
    }
    Manifest {
        file_name: FILE_NAME,
        documents,
    }
}

fn vars(vars_text: &str, options: &Options) -> Document {
    Document {
        comment: vec![
            format!("The vars file, verbatim. The pods read it as {CONFIG_DIR}/{VARS_KEY}"),
            "and reload it when the ConfigMap changes; listener addresses and".to_owned(),
            "limits.max_connections take effect only after `kubectl rollout restart`.".to_owned(),
        ],
        value: json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta::metadata(VARS_CONFIG_MAP, None, options),
            "data": { VARS_KEY: vars_text },
        }),
    }
}

fn endpoints(options: &Options) -> Document {
    let component = Component::PrivateGateway;
    Document {
        comment: vec![
            "The endpoints file of the private gate. Two Deployments cannot share an".to_owned(),
            "emptyDir, so the file lives in this ConfigMap: the reconcile CronJob".to_owned(),
            "rewrites its data, and the private pods read it through a volume and".to_owned(),
            "reload it when it changes. The data below only seeds an empty list.".to_owned(),
            "Re-applying this unchanged file with `kubectl apply` keeps the live data,".to_owned(),
            "because a three-way merge patches only fields that changed here; tell a".to_owned(),
            "GitOps tool to ignore differences in its data.".to_owned(),
        ],
        value: json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta::metadata(ENDPOINTS_CONFIG_MAP, Some(component), options),
            "data": { ENDPOINTS_KEY: EMPTY_ENDPOINTS },
        }),
    }
}
