//! A gate's PodDisruptionBudget and HorizontalPodAutoscaler.

use serde_json::json;

use super::gateway::Gate;
use super::meta;
use super::{Document, Options};

/// The minimum number of pods of a gate. A new Deployment starts with one
/// pod, and the autoscaler raises it to this count even without metrics.
pub(super) const MIN_REPLICAS: u32 = 2;
pub(super) const MAX_REPLICAS: u32 = 10;
/// Mean CPU use, as a percentage of the CPU request, that the autoscaler
/// keeps the pods at.
pub(super) const TARGET_CPU_UTILIZATION: u32 = 70;

/// Keeps one pod of the gate up through voluntary disruptions such as node
/// drains.
pub(super) fn pod_disruption_budget(gate: &Gate<'_>, options: &Options) -> Document {
    let component = gate.component;
    Document {
        comment: Vec::new(),
        value: json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta::metadata(component.object_name(), Some(component), options),
            "spec": {
                "minAvailable": 1,
                "selector": { "matchLabels": meta::labels(Some(component)) },
            },
        }),
    }
}

pub(super) fn horizontal_pod_autoscaler(gate: &Gate<'_>, options: &Options) -> Document {
    let component = gate.component;
    Document {
        comment: vec!["Scaling on CPU needs the metrics API, such as metrics-server.".to_owned()],
        value: json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta::metadata(component.object_name(), Some(component), options),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": component.object_name(),
                },
                "minReplicas": MIN_REPLICAS,
                "maxReplicas": MAX_REPLICAS,
                "metrics": [{
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": TARGET_CPU_UTILIZATION,
                        },
                    },
                }],
            },
        }),
    }
}
