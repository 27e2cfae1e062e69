//! `postern render`: Kubernetes manifests for the gates a vars file
//! describes.
//!
//! Rendering is pure: [`render`] turns a validated [`Config`] and the vars
//! text into [`Manifest`]s of typed JSON values, and only [`render_to_dir`]
//! reads and writes files. Each manifest becomes one YAML file, and a
//! `Kustomization` file lists them all. It has no `.yaml` extension because
//! `kubectl apply -f DIR` reads only `.json`, `.yaml` and `.yml` files, and
//! fails on a Kustomization with "no matches for kind", while kustomize
//! recognizes the name `Kustomization` as well as `kustomization.yaml`.
//!
//! Layout:
//! - `meta`: names, labels and object metadata.
//! - `volumes`: where the vars, endpoints, TLS and secret files appear in a
//!   pod.
//! - `secrets`: the identity secrets a pod reads from files or variables.
//! - `config_maps`: the vars and endpoints ConfigMaps.
//! - `gateway`: one gate's Deployment, Service, PodDisruptionBudget and
//!   HorizontalPodAutoscaler, built by `deployment`, `service` and
//!   `scaling`.
//! - `network_policy`: what may reach each gate and what it may reach, with
//!   `identity_egress` for the identity providers, JWKS and Redis.
//! - `reconcile`: the CronJob that runs `postern reconcile`, and its RBAC.

mod config_maps;
mod deployment;
mod gateway;
mod identity_egress;
mod meta;
mod network_policy;
mod reconcile;
mod scaling;
mod secrets;
mod service;
mod volumes;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::config::{Config, Problems};

pub use meta::{ENDPOINTS_CONFIG_MAP, ENDPOINTS_KEY};

/// The image the workloads run unless `--image` names another.
pub const DEFAULT_IMAGE: &str = concat!("postern:", env!("CARGO_PKG_VERSION"));
/// The namespace of every rendered object unless `--namespace` names another.
pub const DEFAULT_NAMESPACE: &str = "postern";
/// The file that lists the rendered files for kustomize.
pub const KUSTOMIZATION_FILE: &str = "Kustomization";

/// Every file name `render` may write. A render removes the ones it did not
/// write this time from the output folder, so a gate that was switched off
/// leaves no stale manifest behind for `kubectl apply -f DIR`.
pub const FILE_NAMES: [&str; 6] = [
    config_maps::FILE_NAME,
    gateway::PUBLIC_FILE_NAME,
    gateway::PRIVATE_FILE_NAME,
    network_policy::FILE_NAME,
    reconcile::FILE_NAME,
    KUSTOMIZATION_FILE,
];

/// Settings that come from the command line, not from the vars file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub image: String,
    pub namespace: String,
}

/// One output file: its name in the output folder and its YAML documents.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file_name: &'static str,
    pub documents: Vec<Document>,
}

/// One Kubernetes object, and the comment written above it.
#[derive(Debug, Clone)]
pub struct Document {
    /// Lines written as `# ` comments before the object, if any.
    pub comment: Vec<String>,
    pub value: Value,
}

/// The result of a render: the manifests, and problems that do not stop it
/// but that the operator should read.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub manifests: Vec<Manifest>,
    pub warnings: Vec<String>,
}

/// The output of [`render_to_dir`]: the files it wrote and the render's
/// warnings.
#[derive(Debug, Clone)]
pub struct Written {
    /// Paths of the written files, the Kustomization file last.
    pub files: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

/// Errors that stop a render.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Config(Problems),
    /// The vars file is valid but cannot run on Kubernetes as written.
    #[error("{0}")]
    Unsupported(String),
    #[error("invalid option: {0}")]
    Option(String),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
}

/// Validates a vars file, renders it and writes the manifests into `out`,
/// creating the folder if needed. The TLS files are not read, because only
/// their paths go into the manifests and they usually exist only in the
/// pods. The identity secrets are read, as every validation does.
pub fn render_to_dir(vars: &Path, out: &Path, options: &Options) -> Result<Written, RenderError> {
    let text = std::fs::read_to_string(vars).map_err(|source| RenderError::Read {
        path: vars.to_owned(),
        source,
    })?;
    let config = Config::from_text_without_tls_files(vars, &text).map_err(RenderError::Config)?;
    let rendered = render(&config, &text, options)?;

    let source_name = vars
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut outputs = Vec::new();
    for manifest in &rendered.manifests {
        outputs.push((manifest.file_name, to_yaml(manifest, &source_name)?));
    }
    let kustomization = kustomization(&rendered.manifests);
    outputs.push((KUSTOMIZATION_FILE, serde_saphyr::to_string(&kustomization)?));

    write_files(out, &outputs).map(|files| Written {
        files,
        warnings: rendered.warnings,
    })
}

/// Renders every manifest of a validated config. `vars_text` is the vars
/// file exactly as read, which the vars ConfigMap carries verbatim.
pub fn render(
    config: &Config,
    vars_text: &str,
    options: &Options,
) -> Result<Rendered, RenderError> {
    validate_options(options)?;
    let mut warnings = Vec::new();

    let gates = gateway::gates(config, &mut warnings).map_err(RenderError::Unsupported)?;
    let secrets = secrets::identity_secrets(vars_text).map_err(RenderError::Unsupported)?;
    let files = volumes::gateway_files(config, vars_text, &secrets.files);
    let pod_volumes = volumes::PodVolumes::new(&files).map_err(RenderError::Unsupported)?;

    let mut manifests = vec![config_maps::manifest(config, vars_text, options)];
    for gate in &gates {
        manifests.push(gateway::manifest(
            gate,
            config,
            &pod_volumes,
            &secrets.env,
            options,
        ));
    }
    manifests.push(network_policy::manifest(
        config,
        &gates,
        options,
        &mut warnings,
    ));
    if config.private.is_some() {
        manifests.push(reconcile::manifest(config, &secrets, options)?);
    }
    Ok(Rendered {
        manifests,
        warnings,
    })
}

/// Serializes a manifest as a multi-document YAML file with its comments.
pub fn to_yaml(manifest: &Manifest, source_name: &str) -> Result<String, RenderError> {
    let mut text = format!(
        "# Rendered by `postern render` {} from {source_name}.\n\
         # Change the vars file and render again, or patch this file with a\n\
         # kustomize overlay, instead of editing it.\n",
        env!("CARGO_PKG_VERSION"),
    );
    for (i, document) in manifest.documents.iter().enumerate() {
        if i > 0 {
            text.push_str("---\n");
        }
        for line in &document.comment {
            text.push_str(comment_line(line).as_str());
        }
        text.push_str(&serde_saphyr::to_string(&document.value)?);
    }
    Ok(text)
}

fn comment_line(line: &str) -> String {
    if line.is_empty() {
        "#\n".to_owned()
    } else {
        format!("# {line}\n")
    }
}

/// Builds the Kustomization that lists every rendered file, so an overlay can
/// name the output folder as its base.
fn kustomization(manifests: &[Manifest]) -> Value {
    let resources: Vec<&str> = manifests.iter().map(|m| m.file_name).collect();
    json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    })
}

fn validate_options(options: &Options) -> Result<(), RenderError> {
    if !meta::is_dns_label(&options.namespace) {
        return Err(RenderError::Option(format!(
            "namespace {:?} is not a DNS label; use lowercase letters, digits and '-', \
             at most 63 characters",
            options.namespace
        )));
    }
    let image = &options.image;
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RenderError::Option(format!(
            "image {image:?} is not an image reference such as registry.example.com/postern:1.0"
        )));
    }
    Ok(())
}

/// Writes `outputs` into `out` and removes the files of an earlier render
/// that this one did not write.
fn write_files(out: &Path, outputs: &[(&str, String)]) -> Result<Vec<PathBuf>, RenderError> {
    std::fs::create_dir_all(out).map_err(|e| write_error(out, e))?;

    let mut files = Vec::new();
    for (name, text) in outputs {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| write_error(&path, e))?;
        files.push(path);
    }
    for stale in FILE_NAMES {
        if outputs.iter().any(|(name, _)| *name == stale) {
            continue;
        }
        let path = out.join(stale);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_error(&path, e)),
        }
    }
    Ok(files)
}

fn write_error(path: &Path, source: std::io::Error) -> RenderError {
    RenderError::Write {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
