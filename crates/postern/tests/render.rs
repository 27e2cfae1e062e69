//! `postern render` on the example vars files: which files it writes, what
//! the pods mount, and how it handles a second render and a broken file.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::{postern, text};

use serde_json::{Value, json};

const ALL_FILES: [&str; 5] = [
    "configmap.yaml",
    "public-gateway.yaml",
    "private-gateway.yaml",
    "networkpolicies.yaml",
    "reconcile-cronjob.yaml",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn render(vars: &Path, out: &Path) -> Output {
    postern(&[
        "render",
        "--config",
        vars.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

/// Parses every object in a rendered file.
fn objects(out: &Path, file_name: &str) -> Vec<Value> {
    let yaml = std::fs::read_to_string(out.join(file_name)).unwrap();
    serde_saphyr::from_multiple(&yaml).unwrap()
}

fn object(out: &Path, file_name: &str, kind: &str) -> Value {
    objects(out, file_name)
        .into_iter()
        .find(|v| v["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {file_name}"))
}

/// Files in `out`, sorted.
fn listing(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Copies the cluster example into `dir`, with self-signed TLS files. The
/// example names its TLS files under /etc/postern/tls. A pod resolves a
/// relative path against /etc/postern, so the copy names them relative to
/// itself, and the rendered mounts stay the same.
fn cluster_vars(dir: &Path) -> PathBuf {
    for gate in ["public", "private"] {
        let folder = dir.join("tls").join(gate);
        std::fs::create_dir_all(&folder).unwrap();
        let certified =
            rcgen::generate_simple_self_signed(vec![format!("*.{gate}.example")]).unwrap();
        std::fs::write(folder.join("tls.crt"), certified.cert.pem()).unwrap();
        std::fs::write(folder.join("tls.key"), certified.key_pair.serialize_pem()).unwrap();
    }
    let vars = std::fs::read_to_string(fixture("cluster-vars.yaml"))
        .unwrap()
        .replace("/etc/postern/tls/", "tls/");
    let path = dir.join("cluster-vars.yaml");
    std::fs::write(&path, vars).unwrap();
    path
}

#[test]
fn render_writes_local_example() {
    let out = tempfile::tempdir().unwrap();

    let output = render(&fixture("local-vars.yaml"), out.path());

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("wrote 6 files"),
        "{}",
        text(&output.stdout)
    );
    let mut expected: Vec<&str> = ALL_FILES.to_vec();
    expected.push("Kustomization");
    expected.sort();
    assert_eq!(listing(out.path()), expected);
    // The local example listens on loopback, which no probe can reach.
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("warning: gateways.admin.listen"),
        "{stderr}"
    );
}

#[test]
fn render_copies_vars_verbatim() {
    let out = tempfile::tempdir().unwrap();
    let vars = fixture("local-vars.yaml");

    let output = render(&vars, out.path());

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let config_map = object(out.path(), "configmap.yaml", "ConfigMap");
    let original = std::fs::read_to_string(&vars).unwrap();
    assert_eq!(config_map["data"]["vars.yaml"], Value::String(original));
}

#[test]
fn kustomization_lists_every_yaml_file() {
    let out = tempfile::tempdir().unwrap();

    let output = render(&fixture("local-vars.yaml"), out.path());

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let yaml = std::fs::read_to_string(out.path().join("Kustomization")).unwrap();
    let kustomization: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(kustomization["resources"], json!(ALL_FILES));
}

#[test]
fn render_mounts_cluster_example_files() {
    let dir = tempfile::tempdir().unwrap();
    let vars = cluster_vars(dir.path());
    let out = dir.path().join("manifests");

    let output = render(&vars, &out);

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "", "no warnings expected");
    let deployment = object(&out, "public-gateway.yaml", "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let mounts = &pod["containers"][0]["volumeMounts"];
    assert_eq!(mounts[0]["mountPath"], "/etc/postern");
    assert_eq!(mounts[1]["mountPath"], "/var/lib/postern");
    let sources = &pod["volumes"][0]["projected"]["sources"];
    assert_eq!(
        sources[0]["configMap"],
        json!({ "name": "postern-vars", "items": [{ "key": "vars.yaml", "path": "vars.yaml" }] })
    );
    assert_eq!(
        sources[1]["secret"],
        json!({
            "name": "postern-public-tls",
            "items": [
                { "key": "tls.crt", "path": "tls/public/tls.crt" },
                { "key": "tls.key", "path": "tls/public/tls.key" },
            ],
        })
    );
    assert_eq!(sources[2]["secret"]["name"], "postern-private-tls");
    let endpoints = &pod["volumes"][1]["projected"]["sources"][0]["configMap"];
    assert_eq!(
        *endpoints,
        json!({
            "name": "postern-endpoints",
            "items": [{ "key": "endpoints.yaml", "path": "endpoints.yaml" }],
        })
    );
}

#[test]
fn render_maps_cluster_ports_and_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let vars = cluster_vars(dir.path());
    let out = dir.path().join("manifests");

    let output = render(&vars, &out);

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let service = object(&out, "private-gateway.yaml", "Service");
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "https");
    assert_eq!(
        service["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol"],
        "https"
    );
    let policies = objects(&out, "networkpolicies.yaml");
    let private = policies
        .iter()
        .find(|p| p["metadata"]["name"] == "postern-private")
        .unwrap();
    assert_eq!(private["spec"]["ingress"][0]["ports"][0]["port"], 9443);
    let namespaces: Vec<&Value> = private["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| &rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
        .collect();
    assert_eq!(namespaces, [&json!("kube-system"), &json!("litellm")]);
}

#[test]
fn second_render_removes_private_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("manifests");
    let enabled = fixture("local-vars.yaml");
    let first = render(&enabled, &out);
    assert!(first.status.success(), "stderr: {}", text(&first.stderr));
    let disabled = dir.path().join("vars.yaml");
    let vars = std::fs::read_to_string(&enabled).unwrap().replace(
        "      enabled: true\n      allowed_principals",
        "      enabled: false\n      allowed_principals",
    );
    std::fs::write(&disabled, vars).unwrap();
    std::fs::write(out.join("notes.txt"), "kept").unwrap();

    let second = render(&disabled, &out);

    assert!(second.status.success(), "stderr: {}", text(&second.stderr));
    assert_eq!(
        listing(&out),
        [
            "Kustomization",
            "configmap.yaml",
            "networkpolicies.yaml",
            "notes.txt",
            "public-gateway.yaml",
        ]
    );
    assert_eq!(objects(&out, "configmap.yaml").len(), 1);
}

#[test]
fn render_rejects_invalid_vars() {
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("vars.yaml");
    std::fs::write(&vars, "cluster:\n  hostname: x\n").unwrap();
    let out = dir.path().join("manifests");

    let output = render(&vars, &out);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("vars.yaml:"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn render_takes_image_and_namespace() {
    let out = tempfile::tempdir().unwrap();

    let output = postern(&[
        "render",
        "--config",
        fixture("local-vars.yaml").to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--image",
        "registry.example.com/postern:2.0.0",
        "--namespace",
        "edge",
    ]);

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let job = object(out.path(), "reconcile-cronjob.yaml", "CronJob");
    let container = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.com/postern:2.0.0");
    assert_eq!(job["metadata"]["namespace"], "edge");
    let binding = object(out.path(), "reconcile-cronjob.yaml", "RoleBinding");
    assert_eq!(binding["subjects"][0]["namespace"], "edge");
}

#[test]
fn default_image_is_this_version() {
    let out = tempfile::tempdir().unwrap();

    let output = render(&fixture("local-vars.yaml"), out.path());

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let deployment = object(out.path(), "public-gateway.yaml", "Deployment");
    let image = &deployment["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(
        *image,
        json!(format!("postern:{}", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(deployment["metadata"]["namespace"], "postern");
}

/// Adds identities to the cluster example whose secrets come from files in
/// `secrets/` and from two environment variables.
fn cluster_vars_with_secrets(dir: &Path) -> PathBuf {
    let vars = cluster_vars(dir);
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("session-key"), "a".repeat(48)).unwrap();
    std::fs::write(secrets.join("redis-password"), "redis-test-password\n").unwrap();
    let signing = rcgen::KeyPair::generate().unwrap();
    std::fs::write(secrets.join("signing.pem"), signing.serialize_pem()).unwrap();
    let identities = "
identities:
  sessions:
    keys:
      - file: secrets/session-key
      - env: POSTERN_OLD_SESSION_KEY
    redis:
      url: redis://redis.cache.svc.cluster.local:6379/0
      password: {file: secrets/redis-password}
  signing:
    keys:
      - id: k1
        private_key: {file: secrets/signing.pem}
  providers:
    - name: dex
      issuer: https://dex.example.com
      client_id: postern
      client_secret: {env: DEX_CLIENT_SECRET}
";
    let text = std::fs::read_to_string(&vars).unwrap() + identities;
    std::fs::write(&vars, text).unwrap();
    vars
}

/// Runs `postern render` with the environment variables that
/// [`cluster_vars_with_secrets`] names.
fn render_with_secret_env(vars: &Path, out: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["render", "--config", vars.to_str().unwrap(), "--out"])
        .arg(out)
        .env("POSTERN_OLD_SESSION_KEY", "b".repeat(48))
        .env("DEX_CLIENT_SECRET", "dex-test-secret")
        .output()
        .unwrap()
}

#[test]
fn render_mounts_identity_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let vars = cluster_vars_with_secrets(dir.path());
    let out = dir.path().join("manifests");

    let output = render_with_secret_env(&vars, &out);

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let expected_items = json!({
        "name": "postern-identities",
        "items": [
            { "key": "session-key", "path": "secrets/session-key" },
            { "key": "signing.pem", "path": "secrets/signing.pem" },
            { "key": "redis-password", "path": "secrets/redis-password" },
        ],
    });
    let expected_env = json!([
        {
            "name": "POSTERN_OLD_SESSION_KEY",
            "valueFrom": { "secretKeyRef": { "name": "postern-identities", "key": "POSTERN_OLD_SESSION_KEY" } },
        },
        {
            "name": "DEX_CLIENT_SECRET",
            "valueFrom": { "secretKeyRef": { "name": "postern-identities", "key": "DEX_CLIENT_SECRET" } },
        },
    ]);
    let pods = [
        ("public-gateway.yaml", "Deployment", "/spec/template/spec"),
        ("private-gateway.yaml", "Deployment", "/spec/template/spec"),
        (
            "reconcile-cronjob.yaml",
            "CronJob",
            "/spec/jobTemplate/spec/template/spec",
        ),
    ];
    for (file_name, kind, pod_pointer) in pods {
        let workload = object(&out, file_name, kind);
        let pod = workload.pointer(pod_pointer).unwrap();
        let sources = pod["volumes"][0]["projected"]["sources"]
            .as_array()
            .unwrap();
        let identity_source = sources
            .iter()
            .find(|s| s["secret"]["name"] == "postern-identities")
            .unwrap_or_else(|| panic!("{file_name}: no postern-identities source in {sources:?}"));
        assert_eq!(identity_source["secret"], expected_items, "{file_name}");
        assert_eq!(pod["volumes"][0]["name"], "etc-postern", "{file_name}");
        assert_eq!(pod["containers"][0]["env"], expected_env, "{file_name}");
    }
}

/// The deploy guide's vars file names TLS files that exist only in the
/// pods; render needs their paths, not their contents.
#[test]
fn render_skips_missing_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("manifests");

    let output = render(&fixture("cluster-vars.yaml"), &out);

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let deployment = object(&out, "public-gateway.yaml", "Deployment");
    let sources = &deployment["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"];
    assert_eq!(sources[1]["secret"]["name"], "postern-public-tls");
}
