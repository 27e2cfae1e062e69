//! Tests of whole renders: which files and objects appear, and the
//! decisions that span several objects.

use std::path::Path;

use serde_json::Value;

use super::*;

const VARS: &str = "\
cluster:
  hostname: ml.example.com
  region: us-east-1
  vpc_cidrs: [10.20.0.0/16]
gateways:
  public:
    listen: 0.0.0.0:8443
  private:
    listen: 0.0.0.0:9443
    proxy_protocol:
      trusted_sources: [10.20.240.0/22, 10.20.0.0/16]
  admin:
    listen: 0.0.0.0:9901
privatelink:
  endpoints_file: endpoints.yaml
limits:
  shutdown_grace_period: 45s
app_config:
  istio:
    private_gateway:
      enabled: true
      allowed_principals: [arn:aws:iam::012345678910:root]
  litellm:
    enabled: true
    upstream: http://litellm.litellm.svc.cluster.local:4000
    settings:
      allow_private_gateway: true
  mlflow:
    enabled: true
    upstream: http://10.20.5.6:5000
  grafana:
    enabled: false
    upstream: http://grafana.monitoring.svc:3000
  wiki:
    enabled: true
    upstream: http://wiki.example.com
";

fn options() -> Options {
    Options {
        image: "registry.example.com/postern:1.2.3".to_owned(),
        namespace: "edge".to_owned(),
    }
}

fn config(text: &str) -> Config {
    Config::from_text(Path::new("/srv/gitops/vars.yaml"), text).expect("valid test vars")
}

fn private_disabled() -> String {
    VARS.replace(
        "      enabled: true\n      allowed_principals",
        "      enabled: false\n      allowed_principals",
    )
}

fn render_text(text: &str) -> Rendered {
    render(&config(text), text, &options()).expect("render")
}

fn file<'a>(rendered: &'a Rendered, name: &str) -> &'a Manifest {
    rendered
        .manifests
        .iter()
        .find(|m| m.file_name == name)
        .unwrap_or_else(|| panic!("{name} was not rendered"))
}

/// Finds the object of `kind` named `name` in the file `file_name`.
fn object<'a>(rendered: &'a Rendered, file_name: &str, kind: &str, name: &str) -> &'a Value {
    file(rendered, file_name)
        .documents
        .iter()
        .map(|d| &d.value)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {file_name}"))
}

fn all_objects(rendered: &Rendered) -> impl Iterator<Item = &Value> {
    rendered
        .manifests
        .iter()
        .flat_map(|m| m.documents.iter().map(|d| &d.value))
}

fn file_names(rendered: &Rendered) -> Vec<&str> {
    rendered.manifests.iter().map(|m| m.file_name).collect()
}

#[test]
fn enabled_private_gate_renders_every_file() {
    let rendered = render_text(VARS);

    assert_eq!(
        file_names(&rendered),
        [
            "configmap.yaml",
            "public-gateway.yaml",
            "private-gateway.yaml",
            "networkpolicies.yaml",
            "reconcile-cronjob.yaml",
        ]
    );
    object(
        &rendered,
        "configmap.yaml",
        "ConfigMap",
        "postern-endpoints",
    );
    object(
        &rendered,
        "networkpolicies.yaml",
        "NetworkPolicy",
        "postern-private",
    );
}

#[test]
fn disabled_private_gate_renders_nothing_private() {
    let rendered = render_text(&private_disabled());

    assert_eq!(
        file_names(&rendered),
        [
            "configmap.yaml",
            "public-gateway.yaml",
            "networkpolicies.yaml",
        ]
    );
    for value in all_objects(&rendered) {
        let labels = &value["metadata"]["labels"];
        assert_ne!(
            labels["app.kubernetes.io/component"], "private-gateway",
            "{value}"
        );
        assert_ne!(
            labels["app.kubernetes.io/component"], "reconcile",
            "{value}"
        );
        let text = value.to_string();
        assert!(!text.contains("postern-private"), "{text}");
        assert!(!text.contains("postern-endpoints"), "{text}");
    }
    let policies = &file(&rendered, "networkpolicies.yaml").documents;
    assert_eq!(policies.len(), 1);
}

#[test]
fn every_object_is_labelled_and_namespaced() {
    let rendered = render_text(VARS);

    for value in all_objects(&rendered) {
        let metadata = &value["metadata"];
        assert_eq!(metadata["namespace"], "edge", "{value}");
        assert_eq!(
            metadata["labels"]["app.kubernetes.io/name"], "postern",
            "{value}"
        );
    }
    let deployment = object(
        &rendered,
        "private-gateway.yaml",
        "Deployment",
        "postern-private",
    );
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/component"],
        "private-gateway"
    );
}

#[test]
fn vars_config_map_holds_text_verbatim() {
    let text = format!("# a comment with trailing spaces   \n\n{VARS}\n\t# a tab\n");
    let manifest = config_maps::manifest(&config(VARS), &text, &options());

    let yaml = to_yaml(&manifest, "vars.yaml").unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();

    assert_eq!(documents[0]["data"]["vars.yaml"], Value::String(text));
    assert_eq!(documents[1]["data"]["endpoints.yaml"], "endpoints: []\n");
}

#[test]
fn yaml_round_trips_every_object() {
    let rendered = render_text(VARS);

    for manifest in &rendered.manifests {
        let yaml = to_yaml(manifest, "vars.yaml").unwrap();
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
        let expected: Vec<&Value> = manifest.documents.iter().map(|d| &d.value).collect();
        assert_eq!(
            parsed.iter().collect::<Vec<_>>(),
            expected,
            "{}",
            manifest.file_name
        );
        assert!(yaml.starts_with("# Rendered by `postern render`"), "{yaml}");
    }
}

#[test]
fn deployments_serve_one_gate_each() {
    let rendered = render_text(VARS);

    for (file_name, name, gate, port) in [
        ("public-gateway.yaml", "postern-public", "public", 8443),
        ("private-gateway.yaml", "postern-private", "private", 9443),
    ] {
        let deployment = object(&rendered, file_name, "Deployment", name);
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["args"],
            serde_json::json!([
                "serve",
                "--config",
                "/etc/postern/vars.yaml",
                "--gate",
                gate
            ])
        );
        assert_eq!(container["image"], "registry.example.com/postern:1.2.3");
        assert_eq!(container["ports"][0]["containerPort"], port);
        assert_eq!(container["ports"][0]["name"], "http");
        assert_eq!(container["ports"][1]["containerPort"], 9901);
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert!(deployment["spec"].get("replicas").is_none());
    }
}

#[test]
fn deployment_is_locked_down() {
    let rendered = render_text(VARS);
    let deployment = object(
        &rendered,
        "public-gateway.yaml",
        "Deployment",
        "postern-public",
    );
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0]["securityContext"];

    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(pod["securityContext"].get("sysctls").is_none());
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(container["readOnlyRootFilesystem"], true);
    assert_eq!(container["allowPrivilegeEscalation"], false);
    assert_eq!(
        container["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
}

#[test]
fn grace_period_exceeds_shutdown_grace() {
    let rendered = render_text(VARS);
    let deployment = object(
        &rendered,
        "public-gateway.yaml",
        "Deployment",
        "postern-public",
    );

    let grace = &deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"];

    // 5 s default shutdown delay + 45 s drain + 5 s margin.
    assert_eq!(grace, 55);
}

#[test]
fn grace_period_rounds_up() {
    let text = VARS.replace(
        "shutdown_grace_period: 45s",
        "shutdown_grace_period: 1500ms\n  shutdown_delay: 2200ms",
    );

    // 3.7 s of shutdown rounds up to 4, plus the 5 s margin.
    assert_eq!(
        deployment::termination_grace_period_seconds(&config(&text)),
        9
    );
}

#[test]
fn low_port_lowers_unprivileged_port_start() {
    let text = VARS.replace("listen: 0.0.0.0:8443", "listen: 0.0.0.0:443");
    let rendered = render_text(&text);
    let deployment = object(
        &rendered,
        "public-gateway.yaml",
        "Deployment",
        "postern-public",
    );

    let sysctls = &deployment["spec"]["template"]["spec"]["securityContext"]["sysctls"];

    assert_eq!(sysctls[0]["name"], "net.ipv4.ip_unprivileged_port_start");
    assert_eq!(sysctls[0]["value"], "443");
}

#[test]
fn relative_endpoints_file_is_mounted_beside_vars() {
    let rendered = render_text(VARS);
    let deployment = object(
        &rendered,
        "private-gateway.yaml",
        "Deployment",
        "postern-private",
    );
    let pod = &deployment["spec"]["template"]["spec"];

    let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
    let sources = pod["volumes"][0]["projected"]["sources"]
        .as_array()
        .unwrap();

    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0]["mountPath"], "/etc/postern");
    assert_eq!(sources[0]["configMap"]["name"], "postern-vars");
    assert_eq!(sources[1]["configMap"]["name"], "postern-endpoints");
    assert_eq!(
        sources[1]["configMap"]["items"][0]["path"],
        "endpoints.yaml"
    );
}

#[test]
fn private_service_is_internal_proxy_protocol_balancer() {
    let rendered = render_text(VARS);
    let service = object(
        &rendered,
        "private-gateway.yaml",
        "Service",
        "postern-private",
    );
    let annotations = &service["metadata"]["annotations"];
    let annotation =
        |name: &str| &annotations[format!("service.beta.kubernetes.io/aws-load-balancer-{name}")];

    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(annotation("type"), "external");
    assert_eq!(annotation("nlb-target-type"), "ip");
    assert_eq!(annotation("scheme"), "internal");
    assert_eq!(annotation("proxy-protocol"), "*");
    assert_eq!(annotation("subnets"), service::SUBNETS_PLACEHOLDER);
    assert_eq!(
        annotation("additional-resource-tags"),
        "postern.io/gateway=private,postern.io/cluster=ml.example.com"
    );
    assert_eq!(annotation("healthcheck-port"), "traffic-port");
    assert_eq!(annotation("healthcheck-path"), "/healthz");
}

#[test]
fn public_service_is_internet_facing_balancer() {
    let rendered = render_text(VARS);
    let service = object(
        &rendered,
        "public-gateway.yaml",
        "Service",
        "postern-public",
    );
    let annotations = &service["metadata"]["annotations"];
    let annotation =
        |name: &str| &annotations[format!("service.beta.kubernetes.io/aws-load-balancer-{name}")];

    assert_eq!(annotation("scheme"), "internet-facing");
    assert_eq!(annotation("nlb-target-type"), "ip");
    assert_eq!(*annotation("proxy-protocol"), Value::Null);
    assert_eq!(annotation("healthcheck-port"), "9901");
    assert_eq!(annotation("healthcheck-path"), "/readyz");
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
}

#[test]
fn scaling_objects_target_their_gate() {
    let rendered = render_text(VARS);

    let budget = object(
        &rendered,
        "private-gateway.yaml",
        "PodDisruptionBudget",
        "postern-private",
    );
    let autoscaler = object(
        &rendered,
        "private-gateway.yaml",
        "HorizontalPodAutoscaler",
        "postern-private",
    );

    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "private-gateway"
    );
    assert_eq!(
        autoscaler["spec"]["scaleTargetRef"]["name"],
        "postern-private"
    );
    assert_eq!(autoscaler["spec"]["minReplicas"], 2);
    assert_eq!(autoscaler["spec"]["maxReplicas"], 10);
    assert_eq!(
        autoscaler["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
}

#[test]
fn private_policy_admits_vpc_and_balancer_only() {
    let rendered = render_text(VARS);
    let policy = object(
        &rendered,
        "networkpolicies.yaml",
        "NetworkPolicy",
        "postern-private",
    );
    let ingress = policy["spec"]["ingress"].as_array().unwrap();

    assert_eq!(ingress.len(), 2);
    assert_eq!(
        ingress[0]["from"],
        serde_json::json!([
            { "ipBlock": { "cidr": "10.20.0.0/16" } },
            { "ipBlock": { "cidr": "10.20.240.0/22" } },
        ])
    );
    assert_eq!(ingress[0]["ports"][0]["port"], 9443);
    assert_eq!(ingress[1]["from"][0]["ipBlock"]["cidr"], "10.20.0.0/16");
    assert_eq!(ingress[1]["ports"][0]["port"], 9901);
}

#[test]
fn private_policy_reaches_opted_in_apps_only() {
    let rendered = render_text(VARS);
    let policy = object(
        &rendered,
        "networkpolicies.yaml",
        "NetworkPolicy",
        "postern-private",
    );
    let egress = policy["spec"]["egress"].as_array().unwrap();

    assert_eq!(egress.len(), 2, "{egress:?}");
    assert_eq!(egress[0]["ports"][0]["port"], 53);
    assert_eq!(
        egress[1]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "litellm"
    );
    assert_eq!(egress[1]["ports"][0]["port"], 4000);
}

#[test]
fn public_policy_reaches_enabled_apps() {
    let rendered = render_text(VARS);
    let policy = object(
        &rendered,
        "networkpolicies.yaml",
        "NetworkPolicy",
        "postern-public",
    );
    let egress = policy["spec"]["egress"].as_array().unwrap();
    let ingress = policy["spec"]["ingress"].as_array().unwrap();

    // DNS, litellm and mlflow. Grafana is disabled and wiki's host cannot
    // be named.
    assert_eq!(egress.len(), 3, "{egress:?}");
    assert_eq!(egress[2]["to"][0]["ipBlock"]["cidr"], "10.20.5.6/32");
    assert_eq!(egress[2]["ports"][0]["port"], 5000);
    assert!(ingress[0].get("from").is_none());
    assert_eq!(ingress[0]["ports"][0]["port"], 8443);
}

#[test]
fn unnamed_upstream_is_warned_about() {
    let rendered = render_text(VARS);

    let warnings: Vec<&String> = rendered
        .warnings
        .iter()
        .filter(|w| w.contains("wiki.example.com"))
        .collect();

    assert_eq!(warnings.len(), 1, "{:?}", rendered.warnings);
    assert!(warnings[0].contains("postern-public"), "{warnings:?}");
}

#[test]
fn no_rule_admits_or_reaches_everyone() {
    // Without VPC CIDRs or trusted sources, the private gate's ingress rule
    // must vanish, not lose its `from` and admit everyone.
    let text = VARS.replace("  vpc_cidrs: [10.20.0.0/16]\n", "").replace(
        "      trusted_sources: [10.20.240.0/22, 10.20.0.0/16]\n",
        "      trusted_sources: []\n",
    );
    let rendered = render_text(&text);
    let policy = object(
        &rendered,
        "networkpolicies.yaml",
        "NetworkPolicy",
        "postern-private",
    );

    assert_eq!(policy["spec"]["ingress"], serde_json::json!([]));
    for rule in policy["spec"]["egress"].as_array().unwrap() {
        assert!(!rule["to"].as_array().unwrap().is_empty(), "{rule}");
    }
    assert!(
        rendered
            .warnings
            .iter()
            .any(|w| w.contains("cluster.vpc_cidrs is empty")),
        "{:?}",
        rendered.warnings
    );
}

#[test]
fn reconcile_job_may_update_endpoints_only() {
    let rendered = render_text(VARS);
    let role = object(
        &rendered,
        "reconcile-cronjob.yaml",
        "Role",
        "postern-reconcile",
    );
    let job = object(
        &rendered,
        "reconcile-cronjob.yaml",
        "CronJob",
        "postern-reconcile",
    );
    let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];

    assert_eq!(
        role["rules"][0]["resourceNames"],
        serde_json::json!(["postern-endpoints"])
    );
    assert_eq!(job["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(job["spec"]["concurrencyPolicy"], "Forbid");
    assert_eq!(pod["serviceAccountName"], "postern-reconcile");
    assert_eq!(
        pod["containers"][0]["args"],
        serde_json::json!([
            "reconcile",
            "--config",
            "/etc/postern/vars.yaml",
            "--endpoints-configmap",
            "postern-endpoints"
        ])
    );
    object(
        &rendered,
        "reconcile-cronjob.yaml",
        "ServiceAccount",
        "postern-reconcile",
    );
    object(
        &rendered,
        "reconcile-cronjob.yaml",
        "RoleBinding",
        "postern-reconcile",
    );
}

#[test]
fn invalid_namespace_is_rejected() {
    let options = Options {
        namespace: "Edge_1".to_owned(),
        ..options()
    };

    let error = render(&config(VARS), VARS, &options).unwrap_err();

    assert!(error.to_string().contains("Edge_1"), "{error}");
}

#[test]
fn admin_port_shared_with_gate_is_rejected() {
    let text = VARS.replace("listen: 0.0.0.0:9901", "listen: 127.0.0.1:8443");

    let error = render(&config(&text), &text, &options()).unwrap_err();

    assert!(error.to_string().contains("port 8443"), "{error}");
}

#[test]
fn kustomization_lists_rendered_files() {
    let rendered = render_text(&private_disabled());

    let kustomization = kustomization(&rendered.manifests);

    assert_eq!(kustomization["kind"], "Kustomization");
    assert_eq!(
        kustomization["resources"],
        serde_json::json!([
            "configmap.yaml",
            "public-gateway.yaml",
            "networkpolicies.yaml"
        ])
    );
}

#[test]
fn private_balancer_sends_proxy_header_without_trusted_sources() {
    let text = VARS.replace(
        "      trusted_sources: [10.20.240.0/22, 10.20.0.0/16]\n",
        "      trusted_sources: []\n",
    );
    let rendered = render_text(&text);
    let service = object(
        &rendered,
        "private-gateway.yaml",
        "Service",
        "postern-private",
    );

    let annotations = &service["metadata"]["annotations"];

    assert_eq!(
        annotations["service.beta.kubernetes.io/aws-load-balancer-proxy-protocol"],
        "*"
    );
    assert!(
        rendered
            .warnings
            .iter()
            .any(|w| w.contains("trusted_sources is empty")),
        "{:?}",
        rendered.warnings
    );
}

/// VARS with identity services: a trusted issuer, a sign-in provider and
/// Redis sessions.
fn with_identities() -> String {
    format!(
        "{VARS}identities:
  jwt_issuers:
    - name: corp
      issuer: https://login.corp.example
      audiences: [postern]
  sessions:
    keys:
      - insecure_inline: 0123456789abcdef0123456789abcdef
    redis:
      url: redis://redis.cache.svc.cluster.local:6380/0
  providers:
    - name: dex
      issuer: https://dex.example.com:8443/dex
      client_id: postern
      client_secret: {{insecure_inline: test-only}}
"
    )
}

fn egress_rules(rendered: &Rendered, name: &str) -> Vec<Value> {
    let policy = object(rendered, "networkpolicies.yaml", "NetworkPolicy", name);
    policy["spec"]["egress"].as_array().unwrap().clone()
}

fn any_address_rule(port: u16) -> Value {
    serde_json::json!({
        "to": [
            { "ipBlock": { "cidr": "0.0.0.0/0" } },
            { "ipBlock": { "cidr": "::/0" } },
        ],
        "ports": [{ "protocol": "TCP", "port": port }],
    })
}

#[test]
fn public_policy_reaches_identity_services() {
    let rendered = render_text(&with_identities());

    let egress = egress_rules(&rendered, "postern-public");

    // DNS, litellm, mlflow, then the issuer, the provider and Redis.
    assert_eq!(egress.len(), 6, "{egress:?}");
    assert_eq!(egress[0]["ports"][0]["port"], 53);
    assert_eq!(egress[3], any_address_rule(443));
    assert_eq!(egress[4], any_address_rule(8443));
    assert_eq!(
        egress[5]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "cache"
    );
    assert_eq!(egress[5]["ports"][0]["port"], 6380);
}

#[test]
fn private_policy_reaches_issuer_jwks_only() {
    let rendered = render_text(&with_identities());

    let egress = egress_rules(&rendered, "postern-private");

    // DNS, litellm, then the issuer's JWKS, which /readyz waits for.
    assert_eq!(egress.len(), 3, "{egress:?}");
    assert_eq!(egress[2], any_address_rule(443));
}

#[test]
fn policy_comment_names_any_address_services() {
    let rendered = render_text(&with_identities());
    let manifest = file(&rendered, "networkpolicies.yaml");

    let public = manifest.documents[0].comment.join("\n");

    assert!(
        public.contains("identity provider dex, dex.example.com port 8443, at ANY address"),
        "{public}"
    );
    assert!(
        public.contains("Redis sessions, redis.cache.svc.cluster.local port 6380."),
        "{public}"
    );
    assert!(!public.contains("calls none"), "{public}");
}

#[test]
fn policy_without_identities_has_no_identity_rules() {
    let rendered = render_text(VARS);

    for rule in egress_rules(&rendered, "postern-public") {
        assert_ne!(rule["to"][0]["ipBlock"]["cidr"], "0.0.0.0/0", "{rule}");
    }
}

#[test]
fn reconcile_role_allows_get_and_patch_only() {
    let rendered = render_text(VARS);
    let role = object(
        &rendered,
        "reconcile-cronjob.yaml",
        "Role",
        "postern-reconcile",
    );

    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "patch"])
    );
}

/// `postern serve` does not start without its endpoints file. A pod whose
/// ConfigMap is missing would wait in ContainerCreating, so render seeds
/// every ConfigMap a pod mounts.
#[test]
fn every_mounted_config_map_is_rendered() {
    let rendered = render_text(VARS);
    let rendered_maps: Vec<&Value> = all_objects(&rendered)
        .filter(|v| v["kind"] == "ConfigMap")
        .map(|v| &v["metadata"]["name"])
        .collect();

    let mut mounted = Vec::new();
    for value in all_objects(&rendered) {
        let pod = match value["kind"].as_str() {
            Some("Deployment") => &value["spec"]["template"]["spec"],
            Some("CronJob") => &value["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        for volume in pod["volumes"].as_array().unwrap() {
            for source in volume["projected"]["sources"].as_array().unwrap() {
                if let Some(name) = source.get("configMap").map(|c| &c["name"]) {
                    mounted.push(name.clone());
                }
            }
        }
    }

    assert!(
        mounted.contains(&Value::from("postern-endpoints")),
        "{mounted:?}"
    );
    for name in &mounted {
        assert!(
            rendered_maps.contains(&name),
            "{name} is mounted but not rendered"
        );
    }
}
