//! Names, labels and object metadata shared by every rendered object.

use serde_json::{Value, json};

use super::Options;

/// The `app.kubernetes.io/name` of every object.
pub(super) const APP_NAME: &str = "postern";
/// The folder of the vars file in every pod. Relative paths in the vars
/// file are resolved against it, as `postern serve` does.
pub(super) const CONFIG_DIR: &str = "/etc/postern";
pub(super) const VARS_CONFIG_MAP: &str = "postern-vars";
/// The key of the vars file in its ConfigMap, and its file name in the pod.
pub(super) const VARS_KEY: &str = "vars.yaml";
/// The ConfigMap that holds the private gate's endpoints file.
pub const ENDPOINTS_CONFIG_MAP: &str = "postern-endpoints";
/// The key of the endpoints file in [`ENDPOINTS_CONFIG_MAP`].
pub const ENDPOINTS_KEY: &str = "endpoints.yaml";
/// The Secret that contains the session keys, signing keys, providers' client
/// secrets and Redis password that the vars file reads from `file:` or
/// `env:`. The operator creates it.
pub(super) const IDENTITY_SECRET: &str = "postern-identities";
/// The keys of a `kubernetes.io/tls` Secret.
pub(super) const TLS_CERT_KEY: &str = "tls.crt";
pub(super) const TLS_KEY_KEY: &str = "tls.key";
/// The user and group the containers run as, so `runAsNonRoot` holds for
/// any image. 65532 is the `nonroot` user of the distroless base images.
pub(super) const RUN_AS_ID: u32 = 65532;

/// The part of postern that an object belongs to, named by its
/// `app.kubernetes.io/component` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Component {
    PublicGateway,
    PrivateGateway,
    Reconcile,
}

// === impl Component ===

impl Component {
    pub(super) fn label(self) -> &'static str {
        match self {
            Component::PublicGateway => "public-gateway",
            Component::PrivateGateway => "private-gateway",
            Component::Reconcile => "reconcile",
        }
    }

    /// Returns the name of the component's workload and of the objects that
    /// belong to it alone.
    pub(super) fn object_name(self) -> &'static str {
        match self {
            Component::PublicGateway => "postern-public",
            Component::PrivateGateway => "postern-private",
            Component::Reconcile => "postern-reconcile",
        }
    }

    /// Returns the name of the `kubernetes.io/tls` Secret that contains a
    /// gate's certificate and key. The operator creates it, for example with
    /// cert-manager, and render only refers to it.
    pub(super) fn tls_secret_name(self) -> String {
        format!("{}-tls", self.object_name())
    }
}

/// Builds the labels of an object. `component` is `None` for objects that
/// both gates share.
pub(super) fn labels(component: Option<Component>) -> Value {
    match component {
        Some(component) => json!({
            "app.kubernetes.io/name": APP_NAME,
            "app.kubernetes.io/component": component.label(),
        }),
        None => json!({ "app.kubernetes.io/name": APP_NAME }),
    }
}

/// Builds the `metadata` of a namespaced object.
pub(super) fn metadata(name: &str, component: Option<Component>, options: &Options) -> Value {
    json!({
        "name": name,
        "namespace": options.namespace,
        "labels": labels(component),
    })
}

/// Checks an RFC 1123 label, the form of namespace names.
pub(super) fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && !text.starts_with('-')
        && !text.ends_with('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
