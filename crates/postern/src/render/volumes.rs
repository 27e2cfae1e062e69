//! The paths, inside a pod, of the files that a vars file names: the vars
//! file, TLS files, the endpoints file and the identity secrets.
//!
//! The pod reads the vars file at `/etc/postern/vars.yaml`, so a relative
//! path in it resolves against `/etc/postern`, and an absolute path stays as
//! written. Each file comes from a ConfigMap or Secret key. Files are
//! grouped by folder into projected volumes: one volume per top-most folder,
//! with deeper files as item paths inside it. So no volume is mounted inside
//! another, which would need a mount point inside a read-only volume.

use std::path::{Component as PathComponent, Path, PathBuf};

use serde_json::{Value, json};

use super::meta::{
    CONFIG_DIR, Component, ENDPOINTS_CONFIG_MAP, ENDPOINTS_KEY, TLS_CERT_KEY, TLS_KEY_KEY,
    VARS_CONFIG_MAP, VARS_KEY,
};
use crate::config::Config;

/// The vars keys that name TLS files, and the Secret key of each.
const TLS_FILES: [(Component, &str, &str); 4] = [
    (
        Component::PublicGateway,
        "gateways.public.tls.cert",
        TLS_CERT_KEY,
    ),
    (
        Component::PublicGateway,
        "gateways.public.tls.key",
        TLS_KEY_KEY,
    ),
    (
        Component::PrivateGateway,
        "gateways.private.tls.cert",
        TLS_CERT_KEY,
    ),
    (
        Component::PrivateGateway,
        "gateways.private.tls.key",
        TLS_KEY_KEY,
    ),
];
const ENDPOINTS_SETTING: &str = "privatelink.endpoints_file";

/// File mode of every projected file: readable by the owner and by the
/// pod's `fsGroup`, which the containers run as.
const FILE_MODE: u32 = 0o440;

/// A file a pod reads, and the ConfigMap or Secret key it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PodFile {
    /// Absolute and normalized path inside the pod.
    pub path: PathBuf,
    pub source: Source,
    pub key: String,
    /// The vars key that names the file, for error messages.
    pub setting: String,
}

/// A ConfigMap or Secret, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    ConfigMap(String),
    Secret(String),
}

/// The `volumes` of a pod spec and the matching `volumeMounts` of its
/// container.
#[derive(Debug, Clone)]
pub(super) struct PodVolumes {
    pub volumes: Vec<Value>,
    pub mounts: Vec<Value>,
}

/// Lists the files a gateway pod reads at start: the vars file, every TLS
/// file the vars file names, the endpoints file when the private gate is
/// on, and the identity secret files in `secret_files`.
///
/// NOTE: both gates' pods get all of them, because `postern serve` validates
/// the whole vars file at start, including the other gate's TLS files, and
/// so does every reload. A gate that has its own pods should need only its
/// own files.
pub(super) fn gateway_files(
    config: &Config,
    vars_text: &str,
    secret_files: &[PodFile],
) -> Vec<PodFile> {
    let raw = RawPaths::parse(vars_text);
    let mut files = vec![vars_file()];

    // The private gate's TLS files are read whenever gateways.private names
    // them, even while the gate is disabled.
    for (component, setting, key) in TLS_FILES {
        if let Some(raw) = raw.string(setting) {
            files.push(PodFile {
                path: pod_path(&raw),
                source: Source::Secret(component.tls_secret_name()),
                key: key.to_owned(),
                setting: setting.to_owned(),
            });
        }
    }

    let endpoints_file = config.private.as_ref().and(raw.string(ENDPOINTS_SETTING));
    if let Some(raw) = endpoints_file {
        files.push(PodFile {
            path: pod_path(&raw),
            source: Source::ConfigMap(ENDPOINTS_CONFIG_MAP.to_owned()),
            key: ENDPOINTS_KEY.to_owned(),
            setting: ENDPOINTS_SETTING.to_owned(),
        });
    }
    files.extend_from_slice(secret_files);
    files
}

/// Describes the vars file, which every pod reads.
pub(super) fn vars_file() -> PodFile {
    PodFile {
        path: Path::new(CONFIG_DIR).join(VARS_KEY),
        source: Source::ConfigMap(VARS_CONFIG_MAP.to_owned()),
        key: VARS_KEY.to_owned(),
        setting: "the vars file".to_owned(),
    }
}

/// Resolves a path from the vars file as the pod will: against the vars
/// file's folder, with `.` and `..` removed.
pub(super) fn pod_path(raw: &str) -> PathBuf {
    normalize(&Path::new(CONFIG_DIR).join(raw))
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            PathComponent::Normal(name) => out.push(name),
            PathComponent::ParentDir => {
                out.pop();
            }
            PathComponent::RootDir | PathComponent::CurDir | PathComponent::Prefix(_) => {}
        }
    }
    out
}

// === impl PodVolumes ===

impl PodVolumes {
    /// Groups files into projected volumes. Fails when two sources claim
    /// one path, or when a volume would hide a top-level folder of the
    /// image such as `/etc`.
    pub(super) fn new(files: &[PodFile]) -> Result<PodVolumes, String> {
        let files = distinct(files)?;
        let roots = mount_roots(&files);
        let mut volumes = Vec::new();
        let mut mounts = Vec::new();
        let mut names: Vec<String> = Vec::new();

        for root in &roots {
            if root.components().count() < 3 {
                let setting = files
                    .iter()
                    .find(|f| f.path.parent() == Some(root.as_path()))
                    .map_or("a file", |f| f.setting.as_str());
                return Err(format!(
                    "{setting} is in {}, and mounting a volume there would hide the image's own \
                     files; put it in a folder of its own, such as {CONFIG_DIR}/tls",
                    root.display()
                ));
            }
            let name = volume_name(root, &names);
            let inside: Vec<&PodFile> = files.iter().filter(|f| f.path.starts_with(root)).collect();
            volumes.push(json!({
                "name": name,
                "projected": {
                    "defaultMode": FILE_MODE,
                    "sources": projected_sources(root, &inside),
                },
            }));
            mounts.push(json!({
                "name": name,
                "mountPath": root.display().to_string(),
                "readOnly": true,
            }));
            names.push(name);
        }
        Ok(PodVolumes { volumes, mounts })
    }
}

/// Drops repeated files and rejects two different sources for one path.
fn distinct(files: &[PodFile]) -> Result<Vec<PodFile>, String> {
    let mut out: Vec<PodFile> = Vec::new();
    for file in files {
        match out.iter().find(|f| f.path == file.path) {
            Some(seen) if seen.source == file.source && seen.key == file.key => {}
            Some(seen) => {
                return Err(format!(
                    "{} and {} both name {}, but each comes from its own ConfigMap or Secret \
                     key in the pod; give each its own file",
                    seen.setting,
                    file.setting,
                    file.path.display()
                ));
            }
            None => out.push(file.clone()),
        }
    }
    Ok(out)
}

/// Finds the top-most folders that contain the files. A folder inside
/// another one is covered by the outer folder's volume.
fn mount_roots(files: &[PodFile]) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.path.parent().map(Path::to_path_buf))
        .collect();
    // Path order puts a folder before everything inside it.
    folders.sort();
    folders.dedup();
    let mut roots: Vec<PathBuf> = Vec::new();
    for folder in folders {
        if !roots.iter().any(|root| folder.starts_with(root)) {
            roots.push(folder);
        }
    }
    roots
}

/// Makes a volume name from the mount path, such as `etc-postern`, that is
/// unique among the names already used.
fn volume_name(root: &Path, used_names: &[String]) -> String {
    // Every character becomes ASCII, so truncating cannot split one.
    let sanitized: String = root
        .to_string_lossy()
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let mut stem = sanitized.trim_matches('-').to_owned();
    stem.truncate(50);
    let stem = match stem.trim_end_matches('-') {
        "" => "files",
        trimmed => trimmed,
    };

    let mut name = stem.to_owned();
    let mut suffix = 2;
    while used_names.contains(&name) {
        name = format!("{stem}-{suffix}");
        suffix += 1;
    }
    name
}

/// Builds one projected source per ConfigMap or Secret, in order of first
/// use, each listing its keys and their paths under `root`.
fn projected_sources(root: &Path, files: &[&PodFile]) -> Vec<Value> {
    let mut groups: Vec<(&Source, Vec<Value>)> = Vec::new();
    for file in files {
        let relative = file.path.strip_prefix(root).unwrap_or(&file.path);
        let item = json!({ "key": file.key, "path": relative.display().to_string() });
        match groups
            .iter_mut()
            .find(|(source, _)| **source == file.source)
        {
            Some((_, items)) => items.push(item),
            None => groups.push((&file.source, vec![item])),
        }
    }
    groups
        .into_iter()
        .map(|(source, items)| match source {
            Source::ConfigMap(name) => json!({ "configMap": { "name": name, "items": items } }),
            Source::Secret(name) => json!({ "secret": { "name": name, "items": items } }),
        })
        .collect()
}

/// The vars file as plain YAML, to read paths as written, before
/// `postern` resolves them against the folder the file was read from.
#[derive(Debug)]
pub(super) struct RawPaths(Value);

// === impl RawPaths ===

impl RawPaths {
    /// Parses vars text that has already been validated, so it parses. Text
    /// that does not parse yields no paths.
    pub(super) fn parse(vars_text: &str) -> RawPaths {
        RawPaths(serde_saphyr::from_str(vars_text).unwrap_or(Value::Null))
    }

    /// Looks up the value at a JSON pointer such as `/identities/providers`.
    pub(super) fn value(&self, pointer: &str) -> Option<&Value> {
        self.0.pointer(pointer)
    }

    /// Looks up the string at a dotted key path such as
    /// `gateways.public.tls.cert`.
    fn string(&self, setting: &str) -> Option<String> {
        let pointer = format!("/{}", setting.replace('.', "/"));
        self.value(&pointer)?.as_str().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, source: Source, key: &str) -> PodFile {
        PodFile {
            path: PathBuf::from(path),
            source,
            key: key.to_owned(),
            setting: "test.setting".to_owned(),
        }
    }

    #[test]
    fn pod_path_resolves_relative_paths() {
        assert_eq!(
            pod_path("endpoints.yaml"),
            Path::new("/etc/postern/endpoints.yaml")
        );
        assert_eq!(
            pod_path("./tls/cert.pem"),
            Path::new("/etc/postern/tls/cert.pem")
        );
        assert_eq!(
            pod_path("../certs/cert.pem"),
            Path::new("/etc/certs/cert.pem")
        );
    }

    #[test]
    fn pod_path_keeps_absolute_paths() {
        assert_eq!(
            pod_path("/var/lib/postern/endpoints.yaml"),
            Path::new("/var/lib/postern/endpoints.yaml")
        );
        assert_eq!(pod_path("/a/./b/../c.pem"), Path::new("/a/c.pem"));
    }

    #[test]
    fn nested_folders_share_one_volume() {
        let files = [
            file(
                "/etc/postern/vars.yaml",
                Source::ConfigMap("vars".into()),
                "vars.yaml",
            ),
            file(
                "/etc/postern/tls/public/tls.crt",
                Source::Secret("tls".into()),
                "tls.crt",
            ),
            file(
                "/etc/postern/tls/public/tls.key",
                Source::Secret("tls".into()),
                "tls.key",
            ),
            file(
                "/var/lib/postern/endpoints.yaml",
                Source::ConfigMap("ep".into()),
                "e.yaml",
            ),
        ];

        let volumes = PodVolumes::new(&files).unwrap();

        assert_eq!(volumes.volumes.len(), 2);
        assert_eq!(volumes.mounts[0]["mountPath"], "/etc/postern");
        assert_eq!(volumes.mounts[1]["mountPath"], "/var/lib/postern");
        assert_eq!(volumes.mounts[0]["name"], "etc-postern");
        assert_eq!(volumes.mounts[1]["name"], "var-lib-postern");
        let sources = &volumes.volumes[0]["projected"]["sources"];
        assert_eq!(sources[0]["configMap"]["items"][0]["path"], "vars.yaml");
        assert_eq!(sources[1]["secret"]["name"], "tls");
        assert_eq!(
            sources[1]["secret"]["items"][0]["path"],
            "tls/public/tls.crt"
        );
        assert_eq!(sources[1]["secret"]["items"][1]["key"], "tls.key");
        assert_eq!(volumes.volumes[0]["projected"]["defaultMode"], 0o440);
    }

    #[test]
    fn same_path_from_two_sources_is_rejected() {
        let files = [
            file(
                "/etc/postern/tls/tls.crt",
                Source::Secret("a".into()),
                "tls.crt",
            ),
            file(
                "/etc/postern/tls/tls.crt",
                Source::Secret("b".into()),
                "tls.crt",
            ),
        ];

        let error = PodVolumes::new(&files).unwrap_err();

        assert!(error.contains("/etc/postern/tls/tls.crt"), "{error}");
    }

    #[test]
    fn same_file_twice_is_one_item() {
        let files = [
            file(
                "/etc/postern/vars.yaml",
                Source::ConfigMap("v".into()),
                "vars.yaml",
            ),
            file(
                "/etc/postern/vars.yaml",
                Source::ConfigMap("v".into()),
                "vars.yaml",
            ),
        ];

        let volumes = PodVolumes::new(&files).unwrap();

        let items = &volumes.volumes[0]["projected"]["sources"][0]["configMap"]["items"];
        assert_eq!(items.as_array().unwrap().len(), 1);
    }

    #[test]
    fn top_level_folder_is_rejected() {
        let files = [file("/etc/tls.crt", Source::Secret("s".into()), "tls.crt")];

        let error = PodVolumes::new(&files).unwrap_err();

        assert!(error.contains("/etc"), "{error}");
        assert!(error.contains("test.setting"), "{error}");
    }

    #[test]
    fn volume_names_are_unique_labels() {
        let used_names = vec!["etc-postern".to_owned()];

        assert_eq!(
            volume_name(Path::new("/etc/postern"), &used_names),
            "etc-postern-2"
        );
        assert_eq!(
            volume_name(Path::new("/Data/TLS_files"), &[]),
            "data-tls-files"
        );
    }
}
