//! A gate's Deployment.

use serde_json::{Value, json};

use super::gateway::Gate;
use super::meta::{self, CONFIG_DIR, RUN_AS_ID, VARS_KEY};
use super::volumes::PodVolumes;
use super::{Document, Options};
use crate::config::Config;

/// Seconds the pod keeps serving after Kubernetes starts terminating it and
/// before postern gets SIGTERM, so that Services and the load balancer stop
/// sending new connections first. Load balancer deregistration is
/// asynchronous, so an estimate, not a guarantee.
const PRE_STOP_SLEEP_SECONDS: u64 = 10;
/// Seconds of `terminationGracePeriodSeconds` beyond the pre-stop sleep and
/// `limits.shutdown_grace_period`, so the kubelet's SIGKILL never cuts the
/// drain short.
const TERMINATION_MARGIN_SECONDS: u64 = 5;
/// Ports below this one need privileges unless the pod lowers the sysctl
/// `net.ipv4.ip_unprivileged_port_start`, the Linux default.
const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

pub(super) fn deployment(
    gate: &Gate<'_>,
    config: &Config,
    volumes: &PodVolumes,
    options: &Options,
) -> Document {
    let component = gate.component;
    let labels = meta::labels(Some(component));
    let grace = termination_grace_period_seconds(config);
    Document {
        comment: vec![
            format!(
                "`--gate {}` opens only this gate's listener and the admin listener.",
                gate.flag()
            ),
            "No `replicas`: the HorizontalPodAutoscaler below owns the count (at least".to_owned(),
            "2), and a fixed count here would undo its scaling on every apply.".to_owned(),
        ],
        value: json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta::metadata(component.object_name(), Some(component), options),
            "spec": {
                "selector": { "matchLabels": labels },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 },
                },
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "terminationGracePeriodSeconds": grace,
                        "securityContext": pod_security_context(gate),
                        "topologySpreadConstraints": [zone_spread(&labels)],
                        "containers": [container(gate, volumes, options)],
                        "volumes": volumes.volumes,
                    },
                },
            },
        }),
    }
}

/// The pre-stop sleep, plus the drain postern does after SIGTERM, plus a
/// margin, rounded up to whole seconds.
pub(super) fn termination_grace_period_seconds(config: &Config) -> u64 {
    let drain = config.limits.shutdown_grace_period;
    let drain_seconds = drain.as_secs() + u64::from(drain.subsec_nanos() > 0);
    PRE_STOP_SLEEP_SECONDS + drain_seconds + TERMINATION_MARGIN_SECONDS
}

fn container(gate: &Gate<'_>, volumes: &PodVolumes, options: &Options) -> Value {
    json!({
        "name": "postern",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["serve", "--config", format!("{CONFIG_DIR}/{VARS_KEY}"), "--gate", gate.flag()],
        "ports": [
            { "name": gate.port_name(), "containerPort": gate.port, "protocol": "TCP" },
            { "name": "admin", "containerPort": gate.admin_port, "protocol": "TCP" },
        ],
        "readinessProbe": {
            "httpGet": { "path": "/readyz", "port": "admin" },
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": { "path": "/healthz", "port": "admin" },
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "lifecycle": {
            "preStop": { "sleep": { "seconds": PRE_STOP_SLEEP_SECONDS } },
        },
        // Starting points, not measurements: size them for the real load
        // with a kustomize patch. The autoscaler's CPU target is a share of
        // the CPU request.
        "resources": {
            "requests": { "cpu": "250m", "memory": "128Mi" },
            "limits": { "cpu": "2", "memory": "512Mi" },
        },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": { "drop": ["ALL"] },
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "volumeMounts": volumes.mounts,
    })
}

/// Runs as a fixed non-root user whose group owns the mounted files. A gate
/// port below 1024 lowers the unprivileged port range for the pod's own
/// network namespace, because the container has no capabilities.
pub(super) fn pod_security_context(gate: &Gate<'_>) -> Value {
    let mut context = json!({
        "runAsNonRoot": true,
        "runAsUser": RUN_AS_ID,
        "runAsGroup": RUN_AS_ID,
        "fsGroup": RUN_AS_ID,
        "seccompProfile": { "type": "RuntimeDefault" },
    });
    let lowest = gate.port.min(gate.admin_port);
    if lowest < FIRST_UNPRIVILEGED_PORT {
        context["sysctls"] = json!([
            { "name": "net.ipv4.ip_unprivileged_port_start", "value": lowest.to_string() },
        ]);
    }
    context
}

/// Spreads the pods across zones. `ScheduleAnyway`, so that losing a zone
/// does not leave replacement pods unschedulable.
fn zone_spread(labels: &Value) -> Value {
    json!({
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": { "matchLabels": labels },
    })
}
