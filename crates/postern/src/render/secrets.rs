//! The identity secrets a pod reads: session keys, signing keys, providers'
//! client secrets and the Redis password.
//!
//! Every one comes from the Secret [`IDENTITY_SECRET`], which the operator
//! creates. A `file:` secret becomes a projected item whose Secret key is
//! the file's name, so `kubectl create secret generic --from-file=PATH`
//! fills it. An `env:` secret becomes an environment variable whose value
//! is the Secret key of the same name. `insecure_inline:` secrets need
//! nothing.

use serde_json::{Value, json};

use super::meta::IDENTITY_SECRET;
use super::volumes::{PodFile, RawPaths, Source, pod_path};

/// The files and environment variables of the identity secrets.
#[derive(Debug, Clone, Default)]
pub(super) struct IdentitySecrets {
    pub files: Vec<PodFile>,
    /// `env` entries of a container, one per variable.
    pub env: Vec<Value>,
}

/// Finds every secret that the vars file names and maps it to its place in
/// the pod. Fails when a name cannot be a Secret key, or when two files
/// would share one key.
pub(super) fn identity_secrets(vars_text: &str) -> Result<IdentitySecrets, String> {
    let raw = RawPaths::parse(vars_text);
    let mut secrets = IdentitySecrets::default();

    for (setting, node) in secret_settings(&raw) {
        if let Some(file) = node.get("file").and_then(Value::as_str) {
            let path = pod_path(file);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            check_secret_key(&setting, "file name", &name)?;
            if let Some(seen) = secrets.files.iter().find(|f| f.key == name) {
                if seen.path == path {
                    continue;
                }
                return Err(format!(
                    "{} and {setting} name two files called {name}, but both would come from \
                     the key {name} of the Secret {IDENTITY_SECRET}; give the files different names",
                    seen.setting
                ));
            }
            secrets.files.push(PodFile {
                path,
                source: Source::Secret(IDENTITY_SECRET.to_owned()),
                key: name,
                setting,
            });
        } else if let Some(variable) = node.get("env").and_then(Value::as_str) {
            check_secret_key(&setting, "environment variable", variable)?;
            if secrets.env.iter().any(|e| e["name"] == variable) {
                continue;
            }
            secrets.env.push(json!({
                "name": variable,
                "valueFrom": {
                    "secretKeyRef": { "name": IDENTITY_SECRET, "key": variable },
                },
            }));
        }
    }
    Ok(secrets)
}

/// Lists the settings that hold a secret, as (key path, node) pairs, in
/// the order of the configuration reference.
fn secret_settings(raw: &RawPaths) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    let list = |pointer: &str| -> Vec<&Value> {
        raw.value(pointer)
            .and_then(Value::as_array)
            .map(|items| items.iter().collect())
            .unwrap_or_default()
    };

    for (i, key) in list("/identities/sessions/keys").into_iter().enumerate() {
        out.push((format!("identities.sessions.keys[{i}]"), key));
    }
    for (i, key) in list("/identities/signing/keys").into_iter().enumerate() {
        if let Some(secret) = key.get("private_key") {
            out.push((format!("identities.signing.keys[{i}].private_key"), secret));
        }
    }
    for (i, provider) in list("/identities/providers").into_iter().enumerate() {
        if let Some(secret) = provider.get("client_secret") {
            out.push((format!("identities.providers[{i}].client_secret"), secret));
        }
    }
    if let Some(secret) = raw.value("/identities/sessions/redis/password") {
        out.push(("identities.sessions.redis.password".to_owned(), secret));
    }
    out
}

/// Checks that `name` can be a key of a Kubernetes Secret: letters,
/// digits, `-`, `_` and `.`, at most 253 characters, and not `.` or `..`.
fn check_secret_key(setting: &str, what: &str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        return Ok(());
    }
    Err(format!(
        "{setting}: the {what} {name:?} cannot be a key of the Secret {IDENTITY_SECRET}; \
         use only letters, digits, '-', '_' and '.'"
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const SECRETS: &str = "\
identities:
  sessions:
    keys:
      - file: secrets/session-key-2026-05
      - env: POSTERN_OLD_SESSION_KEY
    redis:
      url: redis://redis.cache.svc:6379
      password: {file: /var/run/postern/redis-password}
  signing:
    keys:
      - id: k1
        private_key: {file: secrets/signing.pem}
  providers:
    - name: dex
      client_secret: {env: DEX_CLIENT_SECRET}
    - name: other
      client_secret: {insecure_inline: test-only}
";

    #[test]
    fn file_secrets_become_secret_items() {
        let secrets = identity_secrets(SECRETS).unwrap();

        let found: Vec<(&Path, &str, &str)> = secrets
            .files
            .iter()
            .map(|f| (f.path.as_path(), f.key.as_str(), f.setting.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    Path::new("/etc/postern/secrets/session-key-2026-05"),
                    "session-key-2026-05",
                    "identities.sessions.keys[0]"
                ),
                (
                    Path::new("/etc/postern/secrets/signing.pem"),
                    "signing.pem",
                    "identities.signing.keys[0].private_key"
                ),
                (
                    Path::new("/var/run/postern/redis-password"),
                    "redis-password",
                    "identities.sessions.redis.password"
                ),
            ]
        );
        for file in &secrets.files {
            assert_eq!(file.source, Source::Secret("postern-identities".into()));
        }
    }

    #[test]
    fn env_secrets_become_secret_key_refs() {
        let secrets = identity_secrets(SECRETS).unwrap();

        assert_eq!(secrets.env.len(), 2, "{:?}", secrets.env);
        assert_eq!(secrets.env[0]["name"], "POSTERN_OLD_SESSION_KEY");
        assert_eq!(secrets.env[1]["name"], "DEX_CLIENT_SECRET");
        let reference = &secrets.env[1]["valueFrom"]["secretKeyRef"];
        assert_eq!(reference["name"], "postern-identities");
        assert_eq!(reference["key"], "DEX_CLIENT_SECRET");
    }

    #[test]
    fn no_identities_need_no_secrets() {
        let secrets = identity_secrets("cluster: {hostname: a.example}\n").unwrap();

        assert!(secrets.files.is_empty());
        assert!(secrets.env.is_empty());
    }

    #[test]
    fn same_file_name_in_two_folders_is_rejected() {
        let text = "\
identities:
  sessions:
    keys:
      - file: a/key
      - file: b/key
";

        let error = identity_secrets(text).unwrap_err();

        assert!(error.contains("identities.sessions.keys[0]"), "{error}");
        assert!(error.contains("identities.sessions.keys[1]"), "{error}");
        assert!(error.contains("different names"), "{error}");
    }

    #[test]
    fn same_file_twice_is_one_item() {
        let text = "\
identities:
  sessions:
    keys:
      - file: key
      - file: ./key
";

        let secrets = identity_secrets(text).unwrap();

        assert_eq!(secrets.files.len(), 1);
    }

    #[test]
    fn name_unfit_for_secret_key_is_rejected() {
        let text = "\
identities:
  sessions:
    keys:
      - file: 'session key'
";

        let error = identity_secrets(text).unwrap_err();

        assert!(error.contains("identities.sessions.keys[0]"), "{error}");
        assert!(error.contains("\"session key\""), "{error}");
    }
}
