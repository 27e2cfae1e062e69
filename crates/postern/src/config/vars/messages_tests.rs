//! Problems and warnings that are easy to run into with a first config.
//! Each is reported at the value it is about, with a message that names the
//! value and the fix.

use std::path::Path;

use super::scalars::parse_region;
use super::*;

fn problems(text: &str) -> Vec<Problem> {
    match Config::from_text(Path::new("vars.yaml"), text) {
        Ok(_) => panic!("expected problems"),
        Err(p) => p.0,
    }
}

/// Renders each problem as `FILE:LINE:COLUMN: KEY: MESSAGE`.
fn shown(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(Problem::to_string).collect()
}

const HEAD: &str = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public: {listen: 127.0.0.1:18080}
";

#[test]
fn region_form_checked() {
    for good in [
        "us-east-1",
        "eu-west-1",
        "us-gov-west-1",
        "cn-north-1",
        "cn-northwest-1",
        "ap-southeast-2",
        "il-central-1",
        "mx-central-1",
        "ap-northeast-3",
        "ca-west-1",
    ] {
        assert_eq!(parse_region(good).as_deref(), Ok(good));
    }
    for bad in [
        "",
        "europe",
        "Mars-1",
        "eu-west",
        "eu-west-01",
        "eu-west-1a",
        "eu-wst-1",
        "eu-gov-west",
        "eur-west-1",
        "us-east-1 ",
        "us-iso-east-1",
        "eu-gov-west-1",
    ] {
        let message = parse_region(bad).unwrap_err();
        assert!(message.contains(&format!("{bad:?}")), "{message}");
        assert!(message.contains("such as us-east-1"), "{message}");
    }
}

#[test]
fn cluster_region_word_rejected() {
    let text = "\
cluster:
  hostname: example.test
  region: europe
gateways:
  public: {listen: 127.0.0.1:18080}
app_config: {}
";
    assert_eq!(
        shown(&problems(text)),
        [
            "vars.yaml:3:11: cluster.region: invalid region \"europe\"; expected an AWS region \
          name such as us-east-1, eu-west-1 or us-gov-west-1"
        ]
    );
}

#[test]
fn supported_regions_every_problem() {
    let text = format!(
        "{HEAD}  private: {{listen: 127.0.0.1:18081}}
app_config:
  istio:
    private_gateway:
      enabled: true
      supported_regions: [\"Europe West\", eu-west-1, eu-west-1, europe]
"
    );
    let found = problems(&text);
    let places: Vec<(u64, u64, &str)> = found
        .iter()
        .map(|p| (p.line, p.column, p.path.as_str()))
        .collect();
    let key = "app_config.istio.private_gateway.supported_regions";
    assert_eq!(
        places,
        [
            (9, 27, &*format!("{key}[0]")),
            (9, 53, &*format!("{key}[2]")),
            (9, 64, &*format!("{key}[3]")),
        ]
    );
    assert!(found[0].message.contains("\"Europe West\""), "{}", found[0]);
    assert_eq!(
        found[1].message,
        "duplicate region eu-west-1; list each region once"
    );
    assert!(found[2].message.contains("\"europe\""), "{}", found[2]);
}

#[test]
fn cidr_host_bits_rejected() {
    let text = "\
cluster:
  hostname: example.test
  region: us-east-1
  vpc_cidrs: [127.0.3.1/24, 127.0.1.0/24, 127.0.2.7/32]
gateways:
  public:
    listen: 127.0.0.1:18080
    proxy_protocol: {trusted_sources: [127.0.0.3/31]}
    forwarded_headers: {trusted_sources: [\"fd00::1/64\"]}
app_config: {}
";
    assert_eq!(
        shown(&problems(text)),
        [
            "vars.yaml:4:15: cluster.vpc_cidrs[0]: invalid CIDR block \"127.0.3.1/24\": the \
             address has host bits set for a /24; write 127.0.3.0/24 for the whole network \
             or 127.0.3.1/32 for the one address",
            "vars.yaml:8:40: gateways.public.proxy_protocol.trusted_sources[0]: invalid CIDR \
             block \"127.0.0.3/31\": the address has host bits set for a /31; write \
             127.0.0.2/31 for the whole network or 127.0.0.3/32 for the one address",
            "vars.yaml:9:43: gateways.public.forwarded_headers.trusted_sources[0]: invalid \
             CIDR block \"fd00::1/64\": the address has host bits set for a /64; write \
             fd00::/64 for the whole network or fd00::1/128 for the one address",
        ]
    );
}

#[test]
fn listen_port_problems_named() {
    let text = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public:
    listen: 127.0.0.1:99999
  private:
    listen: 28080
  admin:
    listen: :9901
app_config: {}
";
    assert_eq!(
        shown(&problems(text)),
        [
            "vars.yaml:4:13: gateways.public.listen: invalid listen address \
             \"127.0.0.1:99999\": the port 99999 is out of range; expected a port from 0 to \
             65535",
            "vars.yaml:6:13: gateways.private.listen: expected IP:PORT, found the number \
             28080; write an address and port such as 127.0.0.1:28080 or 0.0.0.0:28080",
            "vars.yaml:8:13: gateways.admin.listen: invalid listen address \":9901\": the IP \
             address is missing; expected IP:PORT such as 0.0.0.0:8443, or 0.0.0.0:9901 for \
             every address",
        ]
    );
}

#[test]
fn numbers_that_are_not_ports_named() {
    let text = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public:
    listen: -1
  private:
    listen: 8443.0
limits:
  max_connections: 100000000000000000000
  max_header_bytes: 8192.0
app_config: {}
";
    assert_eq!(
        shown(&problems(text)),
        [
            "vars.yaml:4:13: gateways.public.listen: expected IP:PORT, found the number -1, \
             which is not a port either; write an address and a port from 0 to 65535, such as \
             127.0.0.1:8080",
            "vars.yaml:6:13: gateways.private.listen: expected IP:PORT, found the number \
             8443; write an address and port such as 127.0.0.1:8443 or 0.0.0.0:8443",
            "vars.yaml:8:20: limits.max_connections: 100000000000000000000 is out of range; \
             expected 1 to 10000000",
            "vars.yaml:9:21: limits.max_header_bytes: expected a whole number, found 8192.0; \
             write 8192",
        ]
    );
}

#[test]
fn shared_listen_reported_at_its_value() {
    let text = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public:
    listen: 127.0.0.1:28080
  private:
    listen: 127.0.0.1:28080
  admin:
    listen: 127.0.0.1:28080
app_config:
  istio:
    private_gateway: {enabled: true}
";
    assert_eq!(
        shown(&problems(text)),
        [
            "vars.yaml:6:13: gateways.private.listen: 127.0.0.1:28080 is also used by \
             gateways.public.listen; give each listener its own address",
            "vars.yaml:8:13: gateways.admin.listen: 127.0.0.1:28080 is also used by \
             gateways.public.listen; give each listener its own address",
        ]
    );
}

#[test]
fn admin_default_clash_reported_at_gate() {
    let text = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public:
    listen: 127.0.0.1:9901
app_config: {}
";
    assert_eq!(
        shown(&problems(text)),
        [
            "vars.yaml:4:13: gateways.public.listen: 127.0.0.1:9901 is also the default of \
          gateways.admin.listen, which is not set; give this listener another address, or \
          set gateways.admin.listen"
        ]
    );
}

#[test]
fn upstream_scheme_problems_named() {
    let text = format!(
        "{HEAD}app_config:
  plain:
    enabled: true
    upstream: 127.0.0.1:28101
  tls:
    enabled: true
    upstream: https://127.0.0.1:28102
"
    );
    assert_eq!(
        shown(&problems(&text)),
        [
            "vars.yaml:7:15: app_config.plain.upstream: invalid upstream \"127.0.0.1:28101\": \
             the scheme is missing; write http://127.0.0.1:28101",
            "vars.yaml:10:15: app_config.tls.upstream: invalid upstream \
             \"https://127.0.0.1:28102\": the scheme is https, but only http upstreams are \
             supported; expected http://HOST:PORT such as http://litellm.litellm.svc:4000",
        ]
    );
}

#[test]
fn tab_indent_named() {
    let found = problems("cluster:\n\thostname: example.test\n");
    assert_eq!(found.len(), 1, "{found:?}");
    let problem = found[0].to_string();
    assert!(problem.starts_with("vars.yaml:2:"), "{problem}");
    assert!(problem.contains("invalid YAML: "), "{problem}");
    assert!(problem.ends_with("; indent with spaces, because YAML does not allow tabs there"));
}

#[test]
fn empty_vars_file_named() {
    for text in ["", "# nothing yet\n"] {
        let found = problems(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .message
                .starts_with("the vars file is empty; it needs at least cluster"),
            "{}",
            found[0]
        );
    }
}

#[test]
fn private_app_without_private_gate_warns() {
    let text = format!(
        "{HEAD}app_config:
  web:
    enabled: true
    upstream: http://127.0.0.1:3000
    settings:
      allow_private_gateway: true
  off:
    enabled: false
    settings:
      allow_private_gateway: true
identities:
  machines: [{{name: ci, token_sha256: {}}}]
",
        "a".repeat(64)
    );
    let config = Config::from_text(Path::new("vars.yaml"), &text).unwrap();
    assert_eq!(
        shown(&config.warnings),
        [
            "vars.yaml:9:30: app_config.web.settings.allow_private_gateway: the private gate is \
          disabled, so no listener serves web privately; set \
          app_config.istio.private_gateway.enabled: true, or remove this setting"
        ]
    );

    let enabled = text.replace(
        "app_config:\n",
        "  private: {listen: 127.0.0.1:18081}\napp_config:\n  istio:\n    private_gateway: {enabled: true}\n",
    );
    let config = Config::from_text(Path::new("vars.yaml"), &enabled).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn cross_references_checked_beside_bad_values() {
    let text = format!(
        "{HEAD}identities:
  machines:
    - name: build-bot
      token_sha256: {}
app_config:
  web:
    enabled: true
    upstream: 127.0.0.1:28091
    settings:
      allowed_machines: [build-bott]
",
        "a".repeat(64)
    );
    assert_eq!(
        shown(&problems(&text)),
        [
            "vars.yaml:11:15: app_config.web.upstream: invalid upstream \"127.0.0.1:28091\": \
             the scheme is missing; write http://127.0.0.1:28091",
            "vars.yaml:13:26: app_config.web.settings.allowed_machines[0]: unknown machine \
             \"build-bott\": it is neither in identities.machines nor in identities.clients; \
             for a bearer JWT from a trusted issuer write ISSUER:IDENTITY, such as \
             dex:build-bott",
        ]
    );

    // A reference into a section that failed to decode is not checked:
    // with the machines list broken, build-bott is not called unknown.
    let broken = text.replace("token_sha256: aaaa", "token_sha256: zzzz");
    let found = shown(&problems(&broken));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].contains("identities.machines[0].token_sha256"),
        "{found:?}"
    );
    assert!(found[1].contains("app_config.web.upstream"), "{found:?}");
}

#[test]
fn tab_after_scalar_placed_on_its_line() {
    let text = format!(
        "{HEAD}app_config:\n  web:\n    enabled: true\n\tupstream: http://127.0.0.1:28101\n"
    );
    assert_eq!(
        shown(&problems(&text)),
        [
            "vars.yaml:7:1: invalid YAML: while scanning a plain scalar, found a tab; indent \
          with spaces, because YAML does not allow tabs there"
        ]
    );

    // A tab after spaces in the indentation is found at its column.
    let text = text.replace("\tupstream", "    \tupstream");
    assert_eq!(
        shown(&problems(&text)),
        [
            "vars.yaml:7:5: invalid YAML: while scanning a plain scalar, found a tab; indent \
          with spaces, because YAML does not allow tabs there"
        ]
    );
}

#[test]
fn near_misses_get_corrected_value() {
    let text = "\
cluster: {hostname: \"https://mycorp.test\", region: us-east-1}
gateways:
  public: {listen: \"localhost:28081\"}
app_config:
  Wiki:
    enabled: true
    upstream: http://127.0.0.1:28101
";
    assert_eq!(
        shown(&problems(text)),
        [
            "vars.yaml:1:21: cluster.hostname: invalid hostname \"https://mycorp.test\": write \
             the host name alone, mycorp.test, without a scheme, port or path",
            "vars.yaml:3:20: gateways.public.listen: invalid listen address \
             \"localhost:28081\": a listen address is an IP address, not a host name; write \
             127.0.0.1:28081",
            "vars.yaml:5:3: app_config.Wiki: invalid name \"Wiki\": a DNS label is lowercase; \
             write wiki",
        ]
    );

    let text = format!("{HEAD}app_config:\n  istio:\n    private_gateway: {{enabled: true}}\n");
    assert_eq!(
        shown(&problems(&text)),
        [
            "vars.yaml:6:22: app_config.istio.private_gateway: the private gate is enabled but \
             gateways.private is missing; add gateways.private.listen or set enabled: false"
        ]
    );
}

#[test]
fn risky_settings_warned() {
    let text = "\
cluster: {hostname: example.test, region: us-east-1}
gateways:
  public:
    listen: 127.0.0.1:18080
    proxy_protocol: {trusted_sources: [10.0.0.0/8, \"::/0\"]}
    forwarded_headers: {trusted_sources: [0.0.0.0/0]}
app_config:
  off:
    enabled: false
  web:
    enabled: true
    upstream: http://127.0.0.1:3000
    timeouts: {response_headers: 30s, total: 10s}
";
    let config = Config::from_text(Path::new("vars.yaml"), text).unwrap();
    assert_eq!(
        shown(&config.warnings),
        [
            "vars.yaml:5:52: gateways.public.proxy_protocol.trusted_sources[1]: ::/0 trusts \
             every client, so any client can send a PROXY header and claim any source address \
             or VPC endpoint; list only the networks of your load balancers or proxies",
            "vars.yaml:6:43: gateways.public.forwarded_headers.trusted_sources[0]: 0.0.0.0/0 \
             trusts every client, so any client can set X-Forwarded-For and X-Request-Id and \
             spoof its address in the access log and to apps; list only the networks of your \
             load balancers or proxies",
            "vars.yaml:10:3: app_config.web: no identities are configured (identities.machines, \
             clients, jwt_issuers, signing, providers and users are all empty), so the public \
             gate denies every request to web and every other enabled app; add one, such as a \
             machine from `postern token new NAME`",
            "vars.yaml:13:46: app_config.web.timeouts.total: total (10s) is shorter than \
             response_headers (30s), so the response_headers timeout never fires; raise \
             total, or lower response_headers below it",
        ]
    );

    // With an identity, a narrow trust list and a longer total: no warning.
    let calm = format!(
        "{}identities:\n  machines: [{{name: ci, token_sha256: {}}}]\n",
        text.replace("\"::/0\"", "\"fd00::/8\"")
            .replace("0.0.0.0/0", "10.1.0.0/16")
            .replace("total: 10s", "total: 60s"),
        "a".repeat(64)
    );
    let config = Config::from_text(Path::new("vars.yaml"), &calm).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}
