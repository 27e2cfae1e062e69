//! `reconcile-cronjob.yaml`: the CronJob that runs `postern reconcile`, its
//! ServiceAccount, and the Role that lets it rewrite the endpoints
//! ConfigMap.

use serde_json::{Value, json};

use super::deployment::{container_security_context, pod_security_context};
use super::meta::{self, CONFIG_DIR, Component, ENDPOINTS_CONFIG_MAP, VARS_KEY};
use super::secrets::IdentitySecrets;
use super::volumes::{PodVolumes, vars_file};
use super::{Document, Manifest, Options, RenderError};
use crate::config::Config;

pub(super) const FILE_NAME: &str = "reconcile-cronjob.yaml";
/// Every 5 minutes.
pub(super) const SCHEDULE: &str = "*/5 * * * *";
/// Seconds after which a run is stopped, shorter than the schedule's
/// interval, so that a hung call does not hold up the next run.
const ACTIVE_DEADLINE_SECONDS: u64 = 240;

const COMPONENT: Component = Component::Reconcile;

pub(super) fn manifest(
    config: &Config,
    secrets: &IdentitySecrets,
    options: &Options,
) -> Result<Manifest, RenderError> {
    Ok(Manifest {
        file_name: FILE_NAME,
        documents: vec![
            service_account(options),
            role(options),
            role_binding(options),
            cron_job(config, secrets, options)?,
        ],
    })
}

fn service_account(options: &Options) -> Document {
    Document {
        comment: vec![
            "Give this account AWS credentials for the EC2 and Elastic Load Balancing".to_owned(),
            "APIs: an eks.amazonaws.com/role-arn annotation (IAM roles for service".to_owned(),
            "accounts) or an EKS Pod Identity association.".to_owned(),
        ],
        value: json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta::metadata(COMPONENT.object_name(), Some(COMPONENT), options),
        }),
    }
}

/// Reads and patches the endpoints ConfigMap, and nothing else: `postern
/// reconcile` sends a GET and a merge PATCH. `create` cannot be limited to
/// one name, and render creates the ConfigMap.
fn role(options: &Options) -> Document {
    Document {
        comment: Vec::new(),
        value: json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta::metadata(COMPONENT.object_name(), Some(COMPONENT), options),
            "rules": [{
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [ENDPOINTS_CONFIG_MAP],
                "verbs": ["get", "patch"],
            }],
        }),
    }
}

fn role_binding(options: &Options) -> Document {
    Document {
        comment: Vec::new(),
        value: json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta::metadata(COMPONENT.object_name(), Some(COMPONENT), options),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": COMPONENT.object_name(),
            },
            "subjects": [{
                "kind": "ServiceAccount",
                "name": COMPONENT.object_name(),
                "namespace": options.namespace,
            }],
        }),
    }
}

/// `postern reconcile` writes the endpoints file into the ConfigMap through
/// the Kubernetes API, with this pod's service account, and validates the
/// vars file without reading the TLS files, which this pod does not mount.
/// Validation does read the identity secrets, so the pod gets them too.
fn cron_job(
    config: &Config,
    secrets: &IdentitySecrets,
    options: &Options,
) -> Result<Document, RenderError> {
    let labels = meta::labels(Some(COMPONENT));
    let hostname = &config.cluster.hostname;
    Ok(Document {
        comment: vec![
            "Runs `postern reconcile` every 5 minutes, one run at a time. It brings".to_owned(),
            format!("the PrivateLink endpoint service of {hostname} in line"),
            format!("with the vars file and writes the endpoints into the {ENDPOINTS_CONFIG_MAP}"),
            "ConfigMap. The pod mounts the vars file and the identity secrets that".to_owned(),
            "validating it reads, and no TLS files.".to_owned(),
        ],
        value: json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta::metadata(COMPONENT.object_name(), Some(COMPONENT), options),
            "spec": {
                "schedule": SCHEDULE,
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "backoffLimit": 1,
                        "activeDeadlineSeconds": ACTIVE_DEADLINE_SECONDS,
                        "template": {
                            "metadata": { "labels": labels },
                            "spec": pod_spec(secrets, options)?,
                        },
                    },
                },
            },
        }),
    })
}

fn pod_spec(secrets: &IdentitySecrets, options: &Options) -> Result<Value, RenderError> {
    let mut files = vec![vars_file()];
    files.extend_from_slice(&secrets.files);
    let volumes = PodVolumes::new(&files).map_err(RenderError::Unsupported)?;
    let mut spec = json!({
        "serviceAccountName": COMPONENT.object_name(),
        "restartPolicy": "Never",
        "enableServiceLinks": false,
        "securityContext": pod_security_context(None),
        "containers": [{
            "name": "postern",
            "image": options.image,
            "imagePullPolicy": "IfNotPresent",
            "args": [
                "reconcile",
                "--config",
                format!("{CONFIG_DIR}/{VARS_KEY}"),
                "--endpoints-configmap",
                ENDPOINTS_CONFIG_MAP,
            ],
            "resources": {
                "requests": { "cpu": "50m", "memory": "64Mi" },
                "limits": { "memory": "256Mi" },
            },
            "securityContext": container_security_context(),
            "volumeMounts": volumes.mounts,
        }],
        "volumes": volumes.volumes,
    });
    if !secrets.env.is_empty() {
        spec["containers"][0]["env"] = json!(secrets.env);
    }
    Ok(spec)
}
