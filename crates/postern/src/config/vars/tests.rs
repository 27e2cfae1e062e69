use std::path::Path;

use super::*;

const LOCAL: &str = include_str!("../../../../../tests/fixtures/local-vars.yaml");
const CLUSTER: &str = include_str!("../../../../../tests/fixtures/cluster-vars.yaml");

fn problems(text: &str) -> Vec<Problem> {
    match Config::from_text(Path::new("vars.yaml"), text) {
        Ok(_) => panic!("expected problems"),
        Err(p) => p.0,
    }
}

#[test]
fn local_example_loads() {
    let config = Config::from_text(Path::new("/etc/postern/vars.yaml"), LOCAL).unwrap();
    assert_eq!(config.cluster.hostname, "example.test");
    assert_eq!(config.public.listen, "127.0.0.1:18080".parse().unwrap());
    let private = config.private.as_ref().expect("private gate enabled");
    assert_eq!(
        private.gate.proxy_sources,
        ["127.0.0.2/32".parse().unwrap()]
    );
    let endpoints_file = private.endpoints_file.as_ref().unwrap();
    assert_eq!(
        endpoints_file.path,
        Path::new("/etc/postern/endpoints.yaml")
    );
    assert_eq!(endpoints_file.line, 23);
    assert_eq!(private.allowed_principals[0].account(), "012345678910");
    assert_eq!(config.machines[0].name, "build-bot");
    let litellm = &config.apps["litellm"];
    assert!(litellm.enabled);
    assert!(litellm.allow_private_gateway);
    assert_eq!(
        litellm.upstream.as_ref().unwrap().authority.as_str(),
        "127.0.0.1:14000"
    );
    assert!(!config.apps["grafana"].allow_private_gateway);
    assert!(!config.apps.contains_key("istio"));
}

#[test]
fn cluster_example_keys_decode() {
    // The TLS files of the production example do not exist here, so the
    // only problems left must be those four missing files.
    let problems = problems(CLUSTER);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    for p in &problems {
        assert!(p.path.ends_with(".cert") || p.path.ends_with(".key"), "{p}");
        assert!(p.message.contains("cannot read"), "{p}");
    }
}

#[test]
fn every_problem_reported_with_path() {
    let text = "\
cluster:
  hostname: example.test
  region: us-east-1
  vpc_cidrs: [10.0.0.0/33]
gateways:
  public:
    listen: 127.0.0.1:18080
    tls_mode: strict
  private:
    listen: nowhere
app_config:
  istio:
    private_gateway:
      enabled: yes
      allowed_principals:
        - arn:aws:iam::012345678910:root
        - arn:aws:iam::12345:root
  litellm:
    enabled: true
    upstream: https://litellm:4000
    settings:
      allow_private_gatway: true
  Bad_Name:
    enabled: true
";
    let problems = problems(text);
    let found: Vec<(u64, &str)> = problems.iter().map(|p| (p.line, p.path.as_str())).collect();
    assert_eq!(
        found,
        [
            (4, "cluster.vpc_cidrs[0]"),
            (8, "gateways.public.tls_mode"),
            (10, "gateways.private.listen"),
            (14, "app_config.istio.private_gateway.enabled"),
            (17, "app_config.istio.private_gateway.allowed_principals[1]"),
            (20, "app_config.litellm.upstream"),
            (22, "app_config.litellm.settings.allow_private_gatway"),
            (23, "app_config.Bad_Name"),
            (24, "app_config.Bad_Name.upstream"),
        ]
    );
    let principal = &problems[4];
    assert!(principal.message.contains("arn:aws:iam::12345:root"));
    assert!(principal.message.contains("12 digits"));
    assert!(problems[1].message.contains("unknown key `tls_mode`"));
    let shown = problems[0].to_string();
    assert!(shown.starts_with("vars.yaml:4:"), "{shown}");
}

#[test]
fn private_switch_needs_listener() {
    let text = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public: {listen: 127.0.0.1:18080}
app_config:
  istio:
    private_gateway:
      enabled: true
";
    let problems = problems(text);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].message.contains("gateways.private is missing"));
}

#[test]
fn disabled_private_gate_opens_nothing() {
    let text = LOCAL.replace(
        "enabled: true\n      allowed",
        "enabled: false\n      allowed",
    );
    let config = Config::from_text(Path::new("vars.yaml"), &text).unwrap();
    assert!(config.private.is_none());

    let without_switch = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public: {listen: 127.0.0.1:18080}
  private: {listen: 127.0.0.1:18081}
app_config: {}
";
    let config = Config::from_text(Path::new("vars.yaml"), without_switch).unwrap();
    assert!(config.private.is_none());
}

#[test]
fn app_enabled_is_required() {
    let text = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public: {listen: 127.0.0.1:18080}
app_config:
  web:
    upstream: http://127.0.0.1:3000
";
    let problems = problems(text);
    assert_eq!(problems[0].path, "app_config.web.enabled");
}

#[test]
fn duplicate_machine_tokens_rejected() {
    let text = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public: {listen: 127.0.0.1:18080}
identities:
  machines:
    - {name: a, token_sha256: ef713a9461487506d9f18c43e4e5968697a8c95e2db69a36d67fb8660dab6a5f}
    - {name: b, token_sha256: ef713a9461487506d9f18c43e4e5968697a8c95e2db69a36d67fb8660dab6a5f}
app_config: {}
";
    let problems = problems(text);
    assert_eq!(problems[0].path, "identities.machines[1]");
}

#[test]
fn timeouts_and_limits_decode() {
    let text = "\
cluster: {hostname: Example.Test., region: us-east-1}
gateways:
  public: {listen: 127.0.0.1:18080}
limits:
  max_connections: 100
  header_read_timeout: 2s
  send_timeout: 90s
app_config:
  web:
    enabled: true
    upstream: http://127.0.0.1
    timeouts: {response_headers: 10m, body_idle: 30s, total: 1h}
";
    let config = Config::from_text(Path::new("vars.yaml"), text).unwrap();
    assert_eq!(config.cluster.hostname, "example.test");
    assert_eq!(config.limits.max_connections, 100);
    assert_eq!(config.limits.header_read_timeout, Duration::from_secs(2));
    assert_eq!(config.limits.send_timeout, Duration::from_secs(90));
    let web = &config.apps["web"];
    assert_eq!(
        web.upstream.as_ref().unwrap().authority.as_str(),
        "127.0.0.1:80"
    );
    assert_eq!(web.timeouts.response_headers, Duration::from_secs(600));
    assert_eq!(web.timeouts.total, Some(Duration::from_secs(3600)));
    assert_eq!(web.timeouts.connect, DEFAULT_CONNECT_TIMEOUT);
}

#[test]
fn supported_regions_decode() {
    let text = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public: {listen: 127.0.0.1:18080}
  private: {listen: 127.0.0.1:18081}
app_config:
  istio:
    private_gateway:
      enabled: true
      supported_regions: [eu-west-1, us-west-2]
";
    let config = Config::from_text(Path::new("vars.yaml"), text).unwrap();
    let private = config.private.unwrap();
    assert_eq!(private.supported_regions, ["eu-west-1", "us-west-2"]);
}

#[test]
fn supported_regions_problems_have_paths() {
    let text = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public: {listen: 127.0.0.1:18080}
  private: {listen: 127.0.0.1:18081}
app_config:
  istio:
    private_gateway:
      enabled: true
      supported_regions:
        - EU West
        - us-west-2
        - us-west-2
";
    let found = problems(text);
    let places: Vec<(u64, &str)> = found.iter().map(|p| (p.line, p.path.as_str())).collect();
    assert_eq!(
        places,
        [
            (10, "app_config.istio.private_gateway.supported_regions[0]"),
            (12, "app_config.istio.private_gateway.supported_regions[2]"),
        ]
    );
    assert!(found[0].message.contains("\"EU West\""));
    assert!(found[1].message.contains("duplicate region us-west-2"));

    let duplicate = text.replace("        - EU West\n", "");
    let found = problems(&duplicate);
    assert_eq!(
        found[0].path,
        "app_config.istio.private_gateway.supported_regions[1]"
    );
    assert_eq!(found[0].line, 11);
    assert!(found[0].message.contains("duplicate region us-west-2"));
}

#[test]
fn tls_files_unread_when_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("vars.yaml");
    let text = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public:
    listen: 127.0.0.1:18080
    tls: {cert: missing.crt, key: missing.key}
app_config: {}
";
    std::fs::write(&vars, text).unwrap();
    assert!(Config::load(&vars).is_err());
    let config = Config::load_without_tls_files(&vars).unwrap();
    let tls = config.public.tls.unwrap();
    assert_eq!(tls.cert, dir.path().join("missing.crt"));
}

const ACCESS_HEAD: &str = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public: {listen: 127.0.0.1:18080}
identities:
  machines:
    - {name: build-bot, token_sha256: ef713a9461487506d9f18c43e4e5968697a8c95e2db69a36d67fb8660dab6a5f}
  jwt_issuers:
    - {name: dex, issuer: https://dex.example.test, audiences: [postern]}
app_config:
  web:
    enabled: true
    upstream: http://127.0.0.1:3000
    settings:
";

#[test]
fn access_rules_decode_lowercased() {
    let text = format!(
        "{ACCESS_HEAD}      allowed_groups: [admins, \"Platform Team\"]
      allowed_emails: [Alice@Example.COM]
      allowed_email_domains: [Example.org]
      allowed_machines: [build-bot, \"dex:ci-runner\"]
"
    );
    let config = Config::from_text(Path::new("vars.yaml"), &text).unwrap();
    let access = &config.apps["web"].access;
    assert_eq!(access.groups.len(), 2);
    assert_eq!(&*access.emails[0], "alice@example.com");
    assert_eq!(&*access.email_domains[0], "example.org");
    assert_eq!(access.machines.len(), 2);
}

#[test]
fn access_rule_problems_have_paths() {
    let text = format!(
        "{ACCESS_HEAD}      allowed_groups: []
      allowed_emails: [alice, bob@example.com]
      allowed_email_domains: [\"@example.org\"]
      allowed_machines: [build-bot, deploy-bot, \"okta:ci\"]
"
    );
    let problems = problems(&text);
    let found: Vec<(u64, &str)> = problems.iter().map(|p| (p.line, p.path.as_str())).collect();
    assert_eq!(
        found,
        [
            (14, "app_config.web.settings.allowed_groups"),
            (15, "app_config.web.settings.allowed_emails[0]"),
            (16, "app_config.web.settings.allowed_email_domains[0]"),
        ],
        "{problems:#?}"
    );
    assert!(
        problems[0].message.contains("deny everyone"),
        "{}",
        problems[0]
    );
    assert!(
        problems[2].message.contains("without the @"),
        "{}",
        problems[2]
    );

    // Machine names are checked once the rest of the file is valid.
    let text = format!(
        "{ACCESS_HEAD}      allowed_machines: [build-bot, deploy-bot, \"okta:ci\"]
"
    );
    let machine_problems = super::tests::problems(&text);
    let paths: Vec<&str> = machine_problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "app_config.web.settings.allowed_machines[1]",
            "app_config.web.settings.allowed_machines[2]",
        ]
    );
    assert!(
        machine_problems[0]
            .message
            .contains("unknown machine \"deploy-bot\"")
    );
    assert!(
        machine_problems[1]
            .message
            .contains("unknown issuer \"okta\"")
    );
}

#[test]
fn duplicate_keys_named_by_path() {
    let text = "\
cluster:
  hostname: example.test
  region: us-east-1
  region: eu-west-1
  vpc_cidrs:
    - {a: 1, a: 2}
";
    let problems = problems(text);
    let places: Vec<(u64, u64, &str)> = problems
        .iter()
        .map(|p| (p.line, p.column, p.path.as_str()))
        .collect();
    assert_eq!(
        places,
        [(4, 3, "cluster.region"), (6, 14, "cluster.vpc_cidrs[0].a")]
    );
    assert_eq!(
        problems[0].to_string(),
        "vars.yaml:4:3: cluster.region: duplicate key `region`; it is first written at \
         line 3; keep one of the two"
    );
}

#[test]
fn file_problem_shown_without_location() {
    let problem = Problem {
        file: "nope.yaml".into(),
        line: 0,
        column: 0,
        path: String::new(),
        message: "cannot read the file: not found; check the path".to_owned(),
    };
    assert_eq!(
        problem.to_string(),
        "nope.yaml: cannot read the file: not found; check the path"
    );
}

#[test]
fn syntax_error_has_no_key_path() {
    let problems = problems("cluster: [unclosed\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    let rendered = problems[0].to_string();
    assert!(rendered.starts_with("vars.yaml:"), "{rendered}");
    assert!(!rendered.contains("(document)"), "{rendered}");
    assert!(rendered.contains(": invalid YAML: "), "{rendered}");
    assert!(
        !rendered.contains("at line"),
        "location repeated: {rendered}"
    );
}
