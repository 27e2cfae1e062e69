//! A gate's Deployment.

use serde_json::{Value, json};

use super::gateway::Gate;
use super::meta::{self, CONFIG_DIR, IDENTITY_SECRET, RUN_AS_ID, VARS_KEY};
use super::volumes::PodVolumes;
use super::{Document, Options};
use crate::config::Config;

/// Seconds of `terminationGracePeriodSeconds` beyond postern's own shutdown
/// (`limits.shutdown_delay` plus `limits.shutdown_grace_period`), so the
/// kubelet's SIGKILL never cuts the drain short.
const TERMINATION_MARGIN_SECONDS: u64 = 5;
/// The Linux default of `net.ipv4.ip_unprivileged_port_start`: binding a
/// lower port needs privileges unless the pod lowers the sysctl.
const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

pub(super) fn deployment(
    gate: &Gate<'_>,
    config: &Config,
    volumes: &PodVolumes,
    env: &[Value],
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
            "Mounted files have mode 0440 (defaultMode 288), readable through fsGroup.".to_owned(),
            format!("Identity secrets, if any, come from the Secret {IDENTITY_SECRET}: a file:"),
            "secret from the key named like the file, an env: secret from the key".to_owned(),
            "named like the variable.".to_owned(),
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
                        "securityContext": pod_security_context(Some(gate.port.min(gate.admin_port))),
                        "topologySpreadConstraints": [zone_spread(&labels)],
                        "containers": [container(gate, volumes, env, options)],
                        "volumes": volumes.volumes,
                    },
                },
            },
        }),
    }
}

/// Adds a margin to the time postern takes to stop after SIGTERM, rounded
/// up to whole seconds. No pre-stop hook is needed, because for
/// `shutdown_delay` postern reports not ready while it still accepts, so
/// Services and load balancers move traffic away first.
pub(super) fn termination_grace_period_seconds(config: &Config) -> u64 {
    let shutdown = config.limits.shutdown_delay + config.limits.shutdown_grace_period;
    let shutdown_seconds = shutdown.as_secs() + u64::from(shutdown.subsec_nanos() > 0);
    shutdown_seconds + TERMINATION_MARGIN_SECONDS
}

fn container(gate: &Gate<'_>, volumes: &PodVolumes, env: &[Value], options: &Options) -> Value {
    let mut container = json!({
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
        // Starting points, not measurements: size them for the real load
        // with a kustomize patch. The autoscaler's CPU target is a share of
        // the CPU request.
        "resources": {
            "requests": { "cpu": "250m", "memory": "128Mi" },
            "limits": { "cpu": "2", "memory": "512Mi" },
        },
        "securityContext": container_security_context(),
        "volumeMounts": volumes.mounts,
    });
    if !env.is_empty() {
        container["env"] = json!(env);
    }
    container
}

/// Builds a container security context that allows no privilege gain, no
/// capabilities and no writes to the image.
pub(super) fn container_security_context() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": { "drop": ["ALL"] },
        "seccompProfile": { "type": "RuntimeDefault" },
    })
}

/// Runs as a fixed non-root user whose group owns the mounted files. When
/// `lowest_port` is below 1024, the pod's own network namespace lets
/// unprivileged processes bind it, because the container has no
/// capabilities.
pub(super) fn pod_security_context(lowest_port: Option<u16>) -> Value {
    let mut context = json!({
        "runAsNonRoot": true,
        "runAsUser": RUN_AS_ID,
        "runAsGroup": RUN_AS_ID,
        "fsGroup": RUN_AS_ID,
        "seccompProfile": { "type": "RuntimeDefault" },
    });
    if let Some(lowest) = lowest_port.filter(|port| *port < FIRST_UNPRIVILEGED_PORT) {
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
