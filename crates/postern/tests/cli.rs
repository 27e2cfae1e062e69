//! The command line: `check`, `serve` on a broken file, `token new`,
//! `--version` and `--help`.

mod support;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use support::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// A vars file with six problems, and where each is reported: line, column,
/// key path and a part of the message.
const BROKEN_VARS: &str = "\
cluster:
  hostname: example.test
  region: us-east-1
  vpc_cidrs:
    - 10.20.0.0/33
gateways:
  public:
    listen: 127.0.0.1:18080
    listne: 1
  admin:
    listen: 127.0.0.1:19901
privatelink:
  endpoints_file: endpoints.yaml
app_config:
  istio:
    private_gateway:
      enabled: false
      allowed_principals:
        - arn:aws:iam::012345678910:root
        - arn:aws:iam::12345:root
  litellm:
    enabled: true
    upstream: https://litellm:4000
  mlflow:
    enabeld: true
    upstream: http://127.0.0.1:5000
";

const BROKEN_VARS_PROBLEMS: [(u32, u32, &str, &str); 6] = [
    (
        5,
        7,
        "cluster.vpc_cidrs[0]",
        "invalid CIDR block \"10.20.0.0/33\"",
    ),
    (9, 5, "gateways.public.listne", "unknown key `listne`"),
    (
        20,
        11,
        "app_config.istio.private_gateway.allowed_principals[1]",
        "invalid principal \"arn:aws:iam::12345:root\"",
    ),
    (23, 15, "app_config.litellm.upstream", "only http upstreams"),
    (25, 5, "app_config.mlflow.enabeld", "unknown key `enabeld`"),
    (
        25,
        5,
        "app_config.mlflow.enabled",
        "missing required key `enabled`",
    ),
];

/// Asserts that `stderr` has one line per expected problem, each in the
/// form `FILE:LINE:COLUMN: KEY: MESSAGE`.
fn assert_problems(stderr: &str, file: &Path, expected: &[(u32, u32, &str, &str)]) {
    for (line, column, key, message) in expected {
        let prefix = format!("{}:{line}:{column}: {key}: ", file.display());
        let found = stderr
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no problem line starts with {prefix:?}; stderr:\n{stderr}"));
        assert!(
            found.contains(message),
            "{found:?} does not say {message:?}"
        );
    }
    let reported = stderr
        .lines()
        .filter(|l| l.starts_with(&*file.to_string_lossy()))
        .count();
    assert_eq!(reported, expected.len(), "problem lines in:\n{stderr}");
}

#[test]
fn check_accepts_local_example() {
    let output = postern(&["check", fixture("local-vars.yaml").to_str().unwrap()]);

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(stdout.contains("2 enabled apps"), "{stdout}");
    assert!(stdout.contains("3 endpoints"), "{stdout}");
}

#[test]
fn check_accepts_cluster_example() {
    // The cluster example names TLS files and an endpoints file under /etc
    // and /var, so point them at generated files instead.
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["*.ml.acme-corp.example".to_owned()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("tls.key"),
        certified.key_pair.serialize_pem(),
    )
    .unwrap();
    std::fs::copy(fixture("endpoints.yaml"), dir.path().join("endpoints.yaml")).unwrap();
    let vars = std::fs::read_to_string(fixture("cluster-vars.yaml")).unwrap();
    let folder = dir.path().display().to_string();
    let vars = vars
        .replace("/etc/postern/tls/public", &folder)
        .replace("/etc/postern/tls/private", &folder)
        .replace("/var/lib/postern", &folder);
    let path = dir.path().join("cluster-vars.yaml");
    std::fs::write(&path, vars).unwrap();

    let output = postern(&["check", path.to_str().unwrap()]);

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("2 enabled apps"), "{stdout}");
    assert!(stdout.contains("2 allowed principals"), "{stdout}");
}

#[test]
fn check_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.yaml");
    std::fs::write(&path, BROKEN_VARS).unwrap();
    std::fs::write(dir.path().join("endpoints.yaml"), DEFAULT_ENDPOINTS).unwrap();

    let output = postern(&["check", path.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    assert_problems(&text(&output.stderr), &path, &BROKEN_VARS_PROBLEMS);
}

#[test]
fn check_reports_endpoints_problems() {
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("vars.yaml");
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(
        &vars,
        std::fs::read_to_string(fixture("local-vars.yaml")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        &endpoints,
        "endpoints:\n  - id: vpce-XYZ\n    owner: \"012345678910\"\n    state: available\n  - id: vpce-0a1b2c3d\n    owner: 12345\n    state: up\n",
    )
    .unwrap();

    let output = postern(&["check", vars.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let expected = [
        (2, 9, "endpoints[0].id", "invalid VPC endpoint id"),
        (6, 12, "endpoints[1].owner", "the owner must be quoted"),
        (7, 12, "endpoints[1].state", "invalid state \"up\""),
    ];
    assert_problems(&text(&output.stderr), &endpoints, &expected);
}

#[test]
fn check_reports_both_files_problems() {
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("vars.yaml");
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(&vars, BROKEN_VARS).unwrap();
    std::fs::write(
        &endpoints,
        "endpoints:\n  - id: vpce-XYZ\n    owner: \"012345678910\"\n    state: available\n",
    )
    .unwrap();

    let output = postern(&["check", vars.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_problems(&stderr, &vars, &BROKEN_VARS_PROBLEMS);
    assert_problems(
        &stderr,
        &endpoints,
        &[(2, 9, "endpoints[0].id", "invalid VPC endpoint id")],
    );
}

#[test]
fn check_rejects_yaml_pitfalls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.yaml");
    let vars = "\
cluster:
  hostname: example.test
  region: us-east-1
gateways:
  public:
    listen: 127.0.0.1:18080
app_config:
  istio:
    private_gateway:
      enabled: false
      allowed_principals:
        - \"*\"
        - arn:aws-cn:iam::012345678910:role/team/inference
  litellm:
    enabled: yes
    upstream: http://127.0.0.1:4000
";
    std::fs::write(&path, vars).unwrap();

    let output = postern(&["check", path.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let expected = [
        (
            12,
            11,
            "app_config.istio.private_gateway.allowed_principals[0]",
            "invalid principal \"*\"",
        ),
        (15, 14, "app_config.litellm.enabled", "\"yes\""),
    ];
    assert_problems(&text(&output.stderr), &path, &expected);
}

#[test]
fn check_names_duplicate_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.yaml");
    let vars = "\
cluster:
  hostname: example.test
  region: us-east-1
gateways:
  public:
    listen: 127.0.0.1:18080
    listen: 127.0.0.1:18081
app_config: {}
";
    std::fs::write(&path, vars).unwrap();

    let output = postern(&["check", path.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let expected = [(
        7,
        5,
        "gateways.public.listen",
        "duplicate key `listen`; it is first written at line 6",
    )];
    assert_problems(&stderr, &path, &expected);
    assert!(!stderr.contains("column 5"), "location repeated: {stderr}");
}

#[test]
fn check_names_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.yaml");

    let output = postern(&["check", path.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let expected = format!("{}: cannot read the file: ", path.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.contains("; check the path"), "{stderr}");
    assert!(!stderr.contains(":0:0"), "{stderr}");
    assert!(!stderr.contains("(document)"), "{stderr}");
}

#[test]
fn check_accepts_anchors_and_merge_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.yaml");
    let vars = "\
cluster:
  hostname: example.test
  region: us-east-1
gateways:
  public:
    listen: 127.0.0.1:18080
app_config:
  litellm: &base
    enabled: true
    upstream: http://127.0.0.1:4000
    timeouts:
      body_idle: 10m
  mlflow:
    <<: *base
    upstream: http://127.0.0.1:5000
";
    std::fs::write(&path, vars).unwrap();

    let output = postern(&["check", path.to_str().unwrap()]);

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert!(text(&output.stdout).contains("2 enabled apps"));
}

#[test]
fn serve_refuses_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.yaml");
    std::fs::write(&path, BROKEN_VARS).unwrap();
    std::fs::write(dir.path().join("endpoints.yaml"), DEFAULT_ENDPOINTS).unwrap();

    let output = postern(&["serve", "--config", path.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_problems(&stderr, &path, &BROKEN_VARS_PROBLEMS);
    assert!(stderr.contains("postern did not start"), "{stderr}");
}

#[tokio::test]
async fn token_new_round_trip() {
    let output = postern(&["token", "new", "ci-runner"]);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let printed = text(&output.stdout);
    let token = printed
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap_or_else(|| panic!("no token line in {printed:?}"))
        .to_owned();
    let entry_start = printed.find("- name: ci-runner").expect("the vars entry");
    let entry = &printed[entry_start..];
    let hash = entry
        .lines()
        .find_map(|l| l.trim().strip_prefix("token_sha256: "))
        .expect("the token_sha256 line");
    assert!(token.starts_with("pst_"), "{token}");
    assert_eq!(hash, hex::encode(Sha256::digest(token.as_bytes())));
    assert!(
        !text(&output.stderr).contains(&token),
        "the token went to stderr"
    );

    // Paste the printed entry under identities.machines, at the depth it
    // was printed.
    let echo = EchoServer::start().await;
    let spec = GatewaySpec::new().app(AppSpec::new("echo", echo.addr));
    let indented: String = printed
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("- name:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let vars = spec
        .vars_yaml()
        .replace("  machines:\n", &format!("  machines:\n{indented}"));
    let gateway = spec.start_with_vars(&vars).await;

    let credential = format!("Bearer {token}");
    let response = get(
        gateway.public,
        &public_host("echo"),
        "/",
        &[("proxy-authorization", &credential)],
    )
    .await;
    assert_eq!(
        response.echo().header("x-auth-request-user").as_deref(),
        Some("ci-runner")
    );
    let other = get_with_token(gateway.public, &public_host("echo"), "/").await;
    assert_eq!(
        other.echo().header("x-auth-request-user").as_deref(),
        Some(MACHINE)
    );
}

#[test]
fn token_new_is_random_and_checks_name() {
    let first = text(&postern(&["token", "new", "a"]).stdout);
    let second = text(&postern(&["token", "new", "a"]).stdout);
    assert_ne!(first, second);

    let invalid = postern(&["token", "new", "bad name"]);
    assert!(!invalid.status.success());
    assert!(text(&invalid.stdout).is_empty());
    assert!(text(&invalid.stderr).contains("invalid machine name \"bad name\""));
}

#[test]
fn version_flag() {
    let output = postern(&["--version"]);

    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout).trim(),
        format!("postern {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_for_every_command() {
    let cases: [(&[&str], &str, &str); 7] = [
        (&["--help"], "Usage: postern <COMMAND>", "serve"),
        (
            &["serve", "--help"],
            "Usage: postern serve",
            "--config <FILE>",
        ),
        (&["check", "--help"], "Usage: postern check", "<FILE>"),
        (
            &["quickstart", "--help"],
            "Usage: postern quickstart",
            "--port <PORT>",
        ),
        (&["token", "--help"], "Usage: postern token", "new"),
        (
            &["token", "new", "--help"],
            "Usage: postern token new",
            "<NAME>",
        ),
        (&["help", "check"], "Usage: postern check", "<FILE>"),
    ];

    for (args, usage, mentions) in cases {
        let output = postern(args);
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(stdout.contains(usage), "{args:?}:\n{stdout}");
        assert!(stdout.contains(mentions), "{args:?}:\n{stdout}");
    }
}

#[test]
fn missing_command_fails_with_usage() {
    let output = postern(&[]);

    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("Usage: postern <COMMAND>"));
}

#[test]
fn reconcile_missing_binary_names_paths() {
    // A copy of postern in a folder of its own has no postern-reconcile
    // beside it, and an empty PATH has none either.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("postern");
    std::fs::copy(env!("CARGO_BIN_EXE_postern"), &copy).unwrap();
    let output = run_fresh_copy(
        std::process::Command::new(&copy)
            .args(["reconcile", "--config", "vars.yaml", "--dry-run"])
            .env("PATH", dir.path().join("empty")),
    );

    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    let beside = dir.path().join("postern-reconcile");
    assert!(stderr.contains(&beside.display().to_string()), "{stderr}");
    assert!(stderr.contains("nor on PATH"), "{stderr}");
    assert!(
        stderr.contains("cargo build --release -p postern-reconcile"),
        "{stderr}"
    );
}

/// Runs a binary that this test process has just written. Another test
/// thread that forks in the meantime keeps the copy's write descriptor open
/// until its child execs, and running the copy then fails with "text file
/// busy" (ETXTBSY). That lasts microseconds, so a few retries suffice.
fn run_fresh_copy(command: &mut std::process::Command) -> std::process::Output {
    const ETXTBSY: i32 = 26;
    for _ in 0..50 {
        match command.output() {
            Err(error) if error.raw_os_error() == Some(ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result.expect("running the copied binary"),
        }
    }
    panic!("the copied binary stayed busy (ETXTBSY) for a second");
}

/// The vars file of a new user's first try: each value with a problem
/// that `check` used to report without the fix.
const FIRST_TRY_VARS: &str = "\
cluster:
  hostname: example.test
  region: europe
  vpc_cidrs: [127.0.3.1/24]
gateways:
  public:
    listen: 127.0.0.1:99999
  private:
    listen: 28081
privatelink:
  endpoints_file: endpoints.yaml
app_config:
  istio:
    private_gateway:
      enabled: true
      supported_regions: [\"Europe West\", eu-west-1, eu-west-1]
  web:
    enabled: true
    upstream: 127.0.0.1:28101
";

#[test]
fn check_names_value_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("vars.yaml");
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(&vars, FIRST_TRY_VARS).unwrap();
    std::fs::write(
        &endpoints,
        "endpoints:\n  - id: vpce-0a1b2c3d\n    owner: 011122223333\n    state: available\n",
    )
    .unwrap();

    let output = postern(&["check", vars.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let expected = [
        (
            3,
            11,
            "cluster.region",
            "invalid region \"europe\"; expected an AWS region name such as us-east-1",
        ),
        (
            4,
            15,
            "cluster.vpc_cidrs[0]",
            "write 127.0.3.0/24 for the whole network or 127.0.3.1/32 for the one address",
        ),
        (
            7,
            13,
            "gateways.public.listen",
            "the port 99999 is out of range; expected a port from 0 to 65535",
        ),
        (
            9,
            13,
            "gateways.private.listen",
            "expected IP:PORT, found the number 28081; write an address and port such as \
             127.0.0.1:28081 or 0.0.0.0:28081",
        ),
        (
            16,
            27,
            "app_config.istio.private_gateway.supported_regions[0]",
            "invalid region \"Europe West\"",
        ),
        (
            16,
            53,
            "app_config.istio.private_gateway.supported_regions[2]",
            "duplicate region eu-west-1; list each region once",
        ),
        (
            19,
            15,
            "app_config.web.upstream",
            "the scheme is missing; write http://127.0.0.1:28101",
        ),
    ];
    assert_problems(&stderr, &vars, &expected);
    assert_problems(
        &stderr,
        &endpoints,
        &[(3, 12, "endpoints[0].owner", "the owner must be quoted")],
    );
    assert!(stderr.ends_with("\n8 problems found\n"), "{stderr}");
}

#[test]
fn check_places_shared_listen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("same-port.yaml");
    let vars = "\
cluster:
  hostname: example.test
  region: us-east-1
gateways:
  public:
    listen: 127.0.0.1:28080

  private:
    listen: 127.0.0.1:28080
  admin:
    listen: 127.0.0.1:28080
app_config:
  istio:
    private_gateway:
      enabled: true
";
    std::fs::write(&path, vars).unwrap();

    let output = postern(&["check", path.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let expected = [
        (
            9,
            13,
            "gateways.private.listen",
            "127.0.0.1:28080 is also used by gateways.public.listen; give each listener its \
             own address",
        ),
        (
            11,
            13,
            "gateways.admin.listen",
            "127.0.0.1:28080 is also used by gateways.public.listen",
        ),
    ];
    assert_problems(&stderr, &path, &expected);
    assert!(stderr.ends_with("\n2 problems found\n"), "{stderr}");
}

#[test]
fn check_rejects_absurd_durations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.yaml");
    let vars = "\
cluster:
  hostname: example.test
  region: us-east-1
gateways:
  public:
    listen: 127.0.0.1:28080
limits:
  send_timeout: 300000000000y
  client_idle_timeout: 1y
app_config:
  web:
    enabled: true
    upstream: http://127.0.0.1:28101
    timeouts:
      body_idle: 2y
";
    std::fs::write(&path, vars).unwrap();

    let output = postern(&["check", path.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let expected = [
        (
            8,
            17,
            "limits.send_timeout",
            "send_timeout 300000000000y is too long; the maximum is 1year",
        ),
        (
            15,
            18,
            "app_config.web.timeouts.body_idle",
            "body_idle 2y is too long; the maximum is 1year",
        ),
    ];
    assert_problems(&stderr, &path, &expected);
    assert!(stderr.ends_with("\n2 problems found\n"), "{stderr}");
}

#[test]
fn check_yaml_hints() {
    let dir = tempfile::tempdir().unwrap();
    let tabbed = dir.path().join("tabbed.yaml");
    std::fs::write(&tabbed, "cluster:\n\thostname: example.test\n").unwrap();

    let output = postern(&["check", tabbed.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let prefix = format!("{}:2:", tabbed.display());
    assert!(stderr.starts_with(&prefix), "{stderr}");
    assert!(
        stderr.contains("; indent with spaces, because YAML does not allow tabs there\n"),
        "{stderr}"
    );
    assert!(stderr.ends_with("\n1 problem found\n"), "{stderr}");

    // An empty endpoints file beside a valid vars file.
    let vars = dir.path().join("vars.yaml");
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::copy(fixture("local-vars.yaml"), &vars).unwrap();
    std::fs::write(&endpoints, "").unwrap();

    let output = postern(&["check", vars.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("write `endpoints: []` for a file without endpoints"),
        "{stderr}"
    );
    assert!(
        stderr.starts_with(&endpoints.display().to_string()),
        "{stderr}"
    );
}

#[test]
fn check_counts_in_words_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.yaml");
    let vars = "\
cluster:
  hostname: example.test
  region: us-east-1
gateways:
  public:
    listen: 127.0.0.1:28080
app_config:
  web:
    enabled: true
    upstream: http://127.0.0.1:28101
    settings:
      allow_private_gateway: true
identities:
  machines:
    - name: ci
      token_sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
";
    std::fs::write(&path, vars).unwrap();

    let output = postern(&["check", path.to_str().unwrap()]);

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(": valid: 1 enabled app, public gate on 127.0.0.1:28080,"),
        "{stdout}"
    );
    let stderr = text(&output.stderr);
    let warning = format!(
        "warning: {}:12:30: app_config.web.settings.allow_private_gateway: the private gate \
         is disabled, so no listener serves web privately; set \
         app_config.istio.private_gateway.enabled: true, or remove this setting\n",
        path.display()
    );
    assert_eq!(stderr, warning);

    // One principal and one endpoint, each counted in the singular.
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(
        &endpoints,
        "endpoints:\n  - id: vpce-0a1b2c3d\n    owner: \"012345678910\"\n    state: available\n",
    )
    .unwrap();
    let private = vars.replace(
        "app_config:\n",
        "  private:\n    listen: 127.0.0.1:28081\nprivatelink:\n  endpoints_file: endpoints.yaml\n\
         app_config:\n  istio:\n    private_gateway:\n      enabled: true\n      \
         allowed_principals: [\"arn:aws:iam::012345678910:root\"]\n",
    );
    std::fs::write(&path, private).unwrap();

    let output = postern(&["check", path.to_str().unwrap()]);

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("(1 allowed principal, 1 endpoint)"),
        "{stdout}"
    );
}

#[test]
fn serve_help_names_gate_values() {
    let output = postern(&["serve", "--help"]);

    assert!(output.status.success());
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("Usage: postern serve [OPTIONS] [FILE]"),
        "{stdout}"
    );
    assert!(stdout.contains("-c, --config <FILE>"), "{stdout}");
    assert!(!stdout.contains("both, or one"), "{stdout}");
    for value in ["all:", "public:", "private:"] {
        assert!(stdout.contains(value), "{value} in:\n{stdout}");
    }
}

/// A vars file that writes a password into the user info of each kind of
/// URL it takes. Each is rejected, and no message may show the password.
const SECRET_URLS_VARS: &str = "\
cluster:
  hostname: example.test
  region: us-east-1
gateways:
  public:
    listen: 127.0.0.1:28080
identities:
  jwt_issuers:
    - name: dex
      issuer: https://dex:hunter2secret@dex.example.test
      audiences: [\"https://api:hunter2secret@api.example.test x\"]
  sessions:
    keys:
      - file: session-key
    redis:
      url: redis://:hunter2secret@127.0.0.1:6379/0
app_config:
  web:
    enabled: true
    upstream: http://user:hunter2secret@127.0.0.1:1
  wiki:
    enabled: true
    upstream: user:hunter2secret@127.0.0.1:2
";

#[test]
fn url_passwords_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.yaml");
    std::fs::write(&path, SECRET_URLS_VARS).unwrap();
    std::fs::write(dir.path().join("session-key"), [7u8; 32]).unwrap();
    let expected = [
        (
            10,
            15,
            "identities.jwt_issuers[0].issuer",
            "invalid URL \"https://***@dex.example.test\": credentials in the URL are not \
             allowed",
        ),
        (
            11,
            19,
            "identities.jwt_issuers[0].audiences[0]",
            "invalid audience \"https://***@api.example.test x\"",
        ),
        (
            16,
            12,
            "identities.sessions.redis.url",
            "invalid Redis URL \"redis://***@127.0.0.1:6379/0\": credentials in the URL are \
             not allowed",
        ),
        (
            20,
            15,
            "app_config.web.upstream",
            "invalid upstream \"http://***@127.0.0.1:1\": credentials in the URL are not \
             allowed",
        ),
        (
            23,
            15,
            "app_config.wiki.upstream",
            "invalid upstream \"***@127.0.0.1:2\"",
        ),
    ];

    let check = postern(&["check", path.to_str().unwrap()]);
    let serve = postern(&["serve", "--config", path.to_str().unwrap()]);

    for (command, output) in [("check", &check), ("serve", &serve)] {
        assert_eq!(output.status.code(), Some(1), "{command}");
        let stdout = text(&output.stdout);
        let stderr = text(&output.stderr);
        assert!(
            !stdout.contains("hunter2secret"),
            "{command} stdout:\n{stdout}"
        );
        assert!(
            !stderr.contains("hunter2secret"),
            "{command} stderr:\n{stderr}"
        );
        assert_problems(&stderr, &path, &expected);
    }
    assert!(text(&serve.stderr).contains("postern did not start"));
}

#[test]
fn check_skip_files_lists_unread() {
    let vars = fixture("cluster-vars.yaml");

    let output = postern(&["check", "--skip-files", vars.to_str().unwrap()]);

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let shown = vars.display();
    let expected = format!(
        "warning: {shown}:36:3: app_config.litellm: no identities are configured \
         (identities.machines, clients, jwt_issuers, signing, providers and users are all \
         empty), so the public gate denies every request to litellm and every other enabled \
         app; add one, such as a machine from `postern token new NAME`\n\
         not read: {shown}:13:13: gateways.public.tls.cert: /etc/postern/tls/public/tls.crt\n\
         not read: {shown}:14:12: gateways.public.tls.key: /etc/postern/tls/public/tls.key\n\
         not read: {shown}:18:13: gateways.private.tls.cert: /etc/postern/tls/private/tls.crt\n\
         not read: {shown}:19:12: gateways.private.tls.key: /etc/postern/tls/private/tls.key\n\
         not read: {shown}:27:19: privatelink.endpoints_file: /var/lib/postern/endpoints.yaml\n"
    );
    assert_eq!(text(&output.stderr), expected);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(": valid except the files it names: 2 enabled apps,"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(2 allowed principals); 5 files not read (--skip-files)"),
        "{stdout}"
    );

    // Without the option, check still reads the files and rejects them.
    let output = postern(&["check", vars.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{shown}:13:13: gateways.public.tls.cert: cannot read /etc/postern/tls/public/tls.crt"
        )),
        "{stderr}"
    );
}

#[test]
fn check_skip_files_keeps_other_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.yaml");
    let vars = "\
cluster:
  hostname: example.test
  region: us-east-1
gateways:
  public:
    listen: 127.0.0.1:28080
identities:
  machines: [{name: ci, token_sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}]
  sessions:
    keys:
      - file: /run/secrets/session-key
app_config:
  web:
    enabled: true
    upstream: 127.0.0.1:28101
";
    std::fs::write(&path, vars).unwrap();

    let output = postern(&["check", "--skip-files", path.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_problems(
        &stderr,
        &path,
        &[(
            15,
            15,
            "app_config.web.upstream",
            "the scheme is missing; write http://127.0.0.1:28101",
        )],
    );

    // With the upstream fixed, the session key file is listed as not read.
    std::fs::write(
        &path,
        vars.replace("127.0.0.1:28101", "http://127.0.0.1:28101"),
    )
    .unwrap();

    let output = postern(&["check", "--skip-files", path.to_str().unwrap()]);

    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        format!(
            "not read: {}:11:9: identities.sessions.keys[0]: /run/secrets/session-key\n",
            path.display()
        )
    );
}

#[test]
fn check_names_endpoints_file_given() {
    let output = postern(&["check", fixture("endpoints.yaml").to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let expected = format!(
        "{}:3:1: endpoints: this is an endpoints file (its top-level key is `endpoints`), not a vars \
         file; check the vars file whose privatelink.endpoints_file names it, which checks \
         both\n1 problem found\n",
        fixture("endpoints.yaml").display()
    );
    assert_eq!(text(&output.stderr), expected);
}

#[test]
fn check_places_missing_endpoints_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.yaml");
    let vars = "\
cluster:
  hostname: example.test
  region: us-east-1
gateways:
  public:
    listen: 127.0.0.1:28080
  private:
    listen: 127.0.0.1:28081
privatelink:
  endpoints_file: nothere.yaml
app_config:
  istio:
    private_gateway:
      enabled: true
";
    let missing = dir.path().join("nothere.yaml");
    let expected = format!(
        "{}:10:19: privatelink.endpoints_file: cannot read the endpoints file {}: No such \
         file or directory (os error 2); postern reconcile writes it, or create it with \
         `endpoints: []`\n",
        path.display(),
        missing.display()
    );

    // Both with a valid vars file and with one that has problems of its own.
    for (vars, count) in [
        (vars.to_owned(), "1 problem"),
        (vars.replace("us-east-1", "europe"), "2 problems"),
    ] {
        std::fs::write(&path, vars).unwrap();

        let output = postern(&["check", path.to_str().unwrap()]);

        assert_eq!(output.status.code(), Some(1));
        let stderr = text(&output.stderr);
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(stderr.ends_with(&format!("\n{count} found\n")), "{stderr}");
    }
}

#[test]
fn serve_names_admin_address_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.yaml");
    // 192.0.2.1 (TEST-NET-1) is assigned to no interface here, so binding
    // it fails with EADDRNOTAVAIL. Binding sends no packet.
    let vars = "\
cluster:
  hostname: example.test
  region: us-east-1
gateways:
  public:
    listen: 127.0.0.1:0
  admin:
    listen: 192.0.2.1:19901
app_config: {}
";
    std::fs::write(&path, vars).unwrap();

    let output = postern(&["serve", path.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "192.0.2.1 is not an address of this host; set gateways.admin.listen to \
             127.0.0.1:19901, or to the pod IP when a scraper outside the pod reads /metrics \
             (this host has 127.0.0.1:19901"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("; avoid 0.0.0.0, which exposes the admin endpoints on every interface"),
        "{stderr}"
    );
}

#[test]
fn relay_and_workers_errors_named() {
    let output = postern(&[
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--to",
        "127.0.0.1:1",
        "--endpoint-id",
        "vpce-XYZ",
    ]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("the relay did not start: invalid VPC endpoint id \"vpce-XYZ\""),
        "{stderr}"
    );

    let output = postern(&["serve", "--workers", "0", "vars.yaml"]);

    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "invalid value '0' for '--workers <N>': the number of worker threads must be at \
             least 1"
        ),
        "{stderr}"
    );
}

#[test]
fn check_names_non_utf8_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"cluster:\n  hostname: caf\xe9.test\n").unwrap();

    let output = postern(&["check", path.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let expected = format!(
        "{}: the file is not UTF-8 text; save it as UTF-8",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
