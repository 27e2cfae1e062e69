//! The endpoints file: its text, and its atomic write.
//!
//! The private gate reloads the file when it changes, and keeps its
//! previous list when the new file fails to load. So the text is checked
//! with the gate's own loader before it is written, and the write replaces
//! the file in one rename: a reader sees the old file or the new one,
//! never a part.

use std::io::Write;
use std::path::Path;

use postern::config::{Endpoint, Endpoints};

/// The result of [`write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The file already held exactly this text, so it was left alone and
    /// the gate does not reload.
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write the endpoints file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the endpoints file for {path} would not load in the private gate: {problems}")]
    Invalid { path: String, problems: String },
}

/// Renders the endpoints file's text, sorted as given.
///
/// Every value is written as a double-quoted YAML scalar (JSON string
/// syntax), so no id, account or region can be read as a number or break
/// the document.
pub fn render(entries: &[Endpoint]) -> String {
    if entries.is_empty() {
        return "endpoints: []\n".to_owned();
    }
    let quote = |text: &str| serde_json::Value::from(text).to_string();
    let mut text = String::from("endpoints:\n");
    for entry in entries {
        text.push_str(&format!("  - id: {}\n", quote(&entry.id)));
        text.push_str(&format!("    owner: {}\n", quote(&entry.owner)));
        text.push_str(&format!("    state: {}\n", quote(entry.state.as_str())));
        if let Some(region) = &entry.region {
            text.push_str(&format!("    region: {}\n", quote(region)));
        }
    }
    text
}

/// Writes `text` to `path` unless the file already contains it: into a
/// temporary file in the same folder, synced to disk, then renamed over
/// `path`, and the folder synced so the rename survives a crash.
pub fn write(path: &Path, text: &str) -> Result<WriteOutcome, WriteError> {
    let shown = path.display().to_string();
    if let Err(problems) = Endpoints::from_text(path, text) {
        return Err(WriteError::Invalid {
            path: shown,
            problems: problems.to_string(),
        });
    }
    if std::fs::read_to_string(path).is_ok_and(|current| current == text) {
        return Ok(WriteOutcome::Unchanged);
    }

    let io = |source| WriteError::Io {
        path: shown.clone(),
        source,
    };
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".endpoints-")
        .suffix(".tmp")
        .tempfile_in(folder)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    // The gate's pods read the file as another user in some setups, and a
    // temporary file is created readable by its owner only.
    set_readable(file.path()).map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    std::fs::File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    Ok(WriteOutcome::Written)
}

#[cfg(unix)]
fn set_readable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_readable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use postern::config::EndpointState;

    use super::*;

    fn entry(id: &str, state: EndpointState) -> Endpoint {
        Endpoint {
            id: id.to_owned(),
            owner: "012345678910".to_owned(),
            state,
            region: Some("us-east-1".to_owned()),
        }
    }

    #[test]
    fn rendered_text_loads_back() {
        let entries = vec![
            entry("vpce-0a1b2c3d4e5f60001", EndpointState::Available),
            entry("vpce-0a1b2c3d4e5f60002", EndpointState::PendingAcceptance),
        ];
        let text = render(&entries);
        let loaded = Endpoints::from_text(Path::new("e.yaml"), &text).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded.get("vpce-0a1b2c3d4e5f60001"), Some(&entries[0]));
        assert_eq!(loaded.get("vpce-0a1b2c3d4e5f60002"), Some(&entries[1]));
        assert!(text.contains("owner: \"012345678910\""), "{text}");
    }

    #[test]
    fn empty_list_renders_empty() {
        let text = render(&[]);
        assert_eq!(text, "endpoints: []\n");
        assert!(
            Endpoints::from_text(Path::new("e.yaml"), &text)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn write_replaces_and_skips_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.yaml");
        std::fs::write(&path, "endpoints: []\n").unwrap();

        let text = render(&[entry("vpce-0a1b2c3d4e5f60001", EndpointState::Available)]);
        assert_eq!(write(&path, &text).unwrap(), WriteOutcome::Written);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(write(&path, &text).unwrap(), WriteOutcome::Unchanged);

        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["endpoints.yaml"]);
    }

    #[test]
    fn invalid_text_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.yaml");
        let error = write(&path, "endpoints:\n  - id: nope\n").unwrap_err();
        assert!(matches!(error, WriteError::Invalid { .. }), "{error}");
        assert!(!path.exists());
    }

    #[test]
    fn missing_folder_named_in_error() {
        let path = Path::new("/nonexistent-postern-folder/endpoints.yaml");
        let error = write(path, "endpoints: []\n").unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent-postern-folder"),
            "{error}"
        );
    }
}
