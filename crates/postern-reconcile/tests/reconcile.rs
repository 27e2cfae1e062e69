//! `postern reconcile` against moto on loopback, with the fake EC2 front
//! for the endpoint-connection calls that moto lacks, and a real private
//! gate on the endpoints file it writes.

mod support;

use std::path::Path;

use support::fake_kube::FakeKube;
use support::*;

/// Creates the balancer, writes vars with `principals` and runs reconcile
/// once, returning the folder, the vars path and the service.
async fn reconciled(
    cloud: &Cloud,
    principals: &[&str],
) -> (tempfile::TempDir, std::path::PathBuf, String, String) {
    cloud.create_private_balancer().await;
    let dir = tempfile::tempdir().unwrap();
    let vars = write_vars(dir.path(), &vars(principals, 9));
    reconcile_ok(&vars, &[], cloud).await;
    let service = cloud.service().await;
    let id = service.service_id().unwrap().to_owned();
    let name = service.service_name().unwrap().to_owned();
    (dir, vars, id, name)
}

#[tokio::test]
async fn first_run_creates_second_changes_nothing() {
    let cloud = Cloud::start().await;
    let balancer = cloud.create_private_balancer().await;
    let dir = tempfile::tempdir().unwrap();
    let vars = write_vars(dir.path(), &vars(&[ALLOWED_PRINCIPAL, ROLE_PRINCIPAL], 9));

    let first = reconcile_ok(&vars, &[], &cloud).await;
    assert!(
        first.stdout.contains("plan: create endpoint service"),
        "{}",
        first.stdout
    );
    let service = cloud.service().await;
    assert_eq!(service.acceptance_required(), Some(true));
    assert_eq!(service.private_dns_name(), Some("*.internal.example.test"));
    assert_eq!(service.network_load_balancer_arns(), [balancer]);
    let id = service.service_id().unwrap();
    assert_eq!(
        cloud.principals(id).await,
        [ALLOWED_PRINCIPAL, ROLE_PRINCIPAL]
    );
    // The service name that client VPCs need is printed.
    assert!(
        first.stdout.contains(service.service_name().unwrap()),
        "{}",
        first.stdout
    );
    assert!(first.stdout.contains("domain verification: verified"));
    let endpoints = std::fs::read_to_string(dir.path().join("endpoints.yaml")).unwrap();
    assert_eq!(endpoints, "endpoints: []\n");

    let before = cloud.fake.actions().len();
    let second = reconcile_ok(&vars, &[], &cloud).await;
    assert!(
        second.stdout.contains("plan: no changes"),
        "{}",
        second.stdout
    );
    assert!(
        second.stdout.contains("unchanged: endpoints file"),
        "{}",
        second.stdout
    );
    let actions = cloud.actions_since(before);
    assert!(
        actions.iter().all(|a| a.starts_with("Describe")),
        "the second run changed something: {actions:?}"
    );
    assert_eq!(cloud.services().await.len(), 1);
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let cloud = Cloud::start().await;
    cloud.create_private_balancer().await;
    let dir = tempfile::tempdir().unwrap();
    let vars = write_vars(dir.path(), &vars(&[ALLOWED_PRINCIPAL], 9));

    let before = cloud.fake.actions().len();
    let run = reconcile_ok(&vars, &["--dry-run"], &cloud).await;
    let actions = cloud.actions_since(before);
    assert!(run.stdout.contains("(dry run)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("plan: create endpoint service"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("plan: add allowed principal arn:aws:iam::012345678910:root"),
        "{}",
        run.stdout
    );
    assert!(cloud.services().await.is_empty());
    assert!(!dir.path().join("endpoints.yaml").exists());
    assert!(
        actions.iter().all(|a| a.starts_with("Describe")),
        "{actions:?}"
    );
}

#[tokio::test]
async fn connections_decided_and_gate_follows() {
    let cloud = Cloud::start().await;
    let upstream = start_upstream().await;
    cloud.create_private_balancer().await;
    let dir = tempfile::tempdir().unwrap();
    let vars = write_vars(
        dir.path(),
        &vars(&[ALLOWED_PRINCIPAL, ROLE_PRINCIPAL], upstream),
    );
    reconcile_ok(&vars, &[], &cloud).await;
    let service = cloud.service().await;
    let service_name = service.service_name().unwrap();

    let allowed = cloud.create_endpoint(ALLOWED_KEY, service_name).await;
    let by_role = cloud.create_endpoint(ROLE_KEY, service_name).await;
    let stranger = cloud.create_endpoint(STRANGER_KEY, service_name).await;

    // A dry run lists the decisions and makes none.
    let before = cloud.fake.actions().len();
    let dry = reconcile_ok(&vars, &["--dry-run"], &cloud).await;
    for id in [&allowed, &by_role] {
        assert!(
            dry.stdout.contains(&format!("plan: accept {id}")),
            "{}",
            dry.stdout
        );
    }
    assert!(
        dry.stdout.contains(&format!(
            "plan: reject {stranger} (owner {STRANGER_ACCOUNT})"
        )),
        "{}",
        dry.stdout
    );
    let actions = cloud.actions_since(before);
    assert!(
        actions.iter().all(|a| a.starts_with("Describe")),
        "{actions:?}"
    );
    assert_eq!(
        cloud.fake.connection(&allowed).unwrap().state,
        "pendingAcceptance"
    );
    let endpoints_path = dir.path().join("endpoints.yaml");
    assert_eq!(
        std::fs::read_to_string(&endpoints_path).unwrap(),
        "endpoints: []\n"
    );

    reconcile_ok(&vars, &[], &cloud).await;
    assert_eq!(cloud.fake.connection(&allowed).unwrap().state, "available");
    assert_eq!(cloud.fake.connection(&by_role).unwrap().state, "available");
    assert_eq!(cloud.fake.connection(&stranger).unwrap().state, "rejected");

    // The endpoints file lists every connection as EC2 reports it.
    let mut expected = vec![
        (allowed.clone(), ALLOWED_ACCOUNT, "available"),
        (by_role.clone(), ROLE_ACCOUNT, "available"),
        (stranger.clone(), STRANGER_ACCOUNT, "rejected"),
    ];
    expected.sort();
    let mut text = String::from("endpoints:\n");
    for (id, owner, state) in &expected {
        text.push_str(&format!(
            "  - id: \"{id}\"\n    owner: \"{owner}\"\n    state: \"{state}\"\n    region: \"{REGION}\"\n"
        ));
    }
    assert_eq!(std::fs::read_to_string(&endpoints_path).unwrap(), text);

    // A private gate on that file admits the accepted endpoint only.
    let gate = Gate::start(&vars).await;
    let admitted = gate.request_through_endpoint(&allowed).await;
    assert!(admitted.starts_with("HTTP/1.1 200"), "{admitted}");
    assert!(admitted.ends_with(UPSTREAM_BODY), "{admitted}");
    let refused = gate.request_through_endpoint(&stranger).await;
    assert_eq!(refused, "", "the rejected endpoint got an answer");
}

#[tokio::test]
async fn removed_principal_leaves_service() {
    let cloud = Cloud::start().await;
    let (dir, vars_path, service_id, service_name) =
        reconciled(&cloud, &[ALLOWED_PRINCIPAL, ROLE_PRINCIPAL]).await;
    let by_role = cloud.create_endpoint(ROLE_KEY, &service_name).await;
    reconcile_ok(&vars_path, &[], &cloud).await;
    assert_eq!(cloud.fake.connection(&by_role).unwrap().state, "available");

    write_vars(dir.path(), &vars(&[ALLOWED_PRINCIPAL], 9));
    let run = reconcile_ok(&vars_path, &[], &cloud).await;
    assert!(
        run.stdout
            .contains(&format!("plan: remove allowed principal {ROLE_PRINCIPAL}")),
        "{}",
        run.stdout
    );
    assert_eq!(cloud.principals(&service_id).await, [ALLOWED_PRINCIPAL]);
    // AWS keeps the accepted connection. The run warns about it and leaves it.
    assert_eq!(cloud.fake.connection(&by_role).unwrap().state, "available");
    assert!(run.stderr.contains(&by_role), "{}", run.stderr);
    assert!(run.stderr.contains("--reject-accepted"), "{}", run.stderr);

    reconcile_ok(&vars_path, &["--reject-accepted"], &cloud).await;
    assert_eq!(cloud.fake.connection(&by_role).unwrap().state, "rejected");
}

#[tokio::test]
async fn disabled_gate_pruned_only_when_asked() {
    let cloud = Cloud::start().await;
    let (dir, vars_path, service_id, service_name) = reconciled(&cloud, &[ALLOWED_PRINCIPAL]).await;
    let allowed = cloud.create_endpoint(ALLOWED_KEY, &service_name).await;
    reconcile_ok(&vars_path, &[], &cloud).await;

    write_vars(dir.path(), &vars_disabled());
    let kept = reconcile_ok(&vars_path, &[], &cloud).await;
    assert!(
        kept.stdout.contains("only --prune deletes it"),
        "{}",
        kept.stdout
    );
    assert_eq!(cloud.services().await.len(), 1);

    let pruned = reconcile_ok(&vars_path, &["--prune"], &cloud).await;
    assert!(
        pruned
            .stdout
            .contains(&format!("plan: delete endpoint service {service_id}")),
        "{}",
        pruned.stdout
    );
    assert_eq!(cloud.fake.connection(&allowed).unwrap().state, "rejected");
    assert!(cloud.services().await.is_empty());
}

#[tokio::test]
async fn missing_balancer_named_in_error() {
    let cloud = Cloud::start().await;
    let dir = tempfile::tempdir().unwrap();
    let vars = write_vars(dir.path(), &vars(&[ALLOWED_PRINCIPAL], 9));
    let run = reconcile(&["--config", vars.to_str().unwrap()], &cloud).await;
    assert!(!run.success);
    assert!(
        run.stderr.contains("postern.io/cluster=example.test"),
        "{}",
        run.stderr
    );
    assert!(cloud.services().await.is_empty());
}

#[tokio::test]
async fn bad_vars_reported_with_line() {
    let cloud = Cloud::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = vars(&[ALLOWED_PRINCIPAL], 9).replace(
        "      enabled: true\n",
        "      enabled: true\n      supported_regions: [Mars]\n",
    );
    let vars = write_vars(dir.path(), &text);
    let before = cloud.fake.actions().len();
    let run = reconcile(&["--config", vars.to_str().unwrap()], &cloud).await;
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("app_config.istio.private_gateway.supported_regions[0]"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("vars.yaml:16:"), "{}", run.stderr);
    assert!(cloud.actions_since(before).is_empty());
}

#[tokio::test]
async fn postern_reconcile_runs_sibling_binary() {
    let cloud = Cloud::start().await;
    cloud.create_private_balancer().await;
    let dir = tempfile::tempdir().unwrap();
    let vars = write_vars(dir.path(), &vars(&[ALLOWED_PRINCIPAL], 9));
    let run = run_command(
        &postern_binary(),
        &["reconcile", "--config", vars.to_str().unwrap(), "--dry-run"],
        &cloud,
    )
    .await;
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("plan: create endpoint service"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn endpoints_written_to_config_map() {
    let cloud = Cloud::start().await;
    cloud.create_private_balancer().await;
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start(dir.path()).await;
    kube.create(
        "postern-endpoints",
        &[("endpoints.yaml", "endpoints: []\n")],
    );
    let vars = write_vars(dir.path(), &vars(&[ALLOWED_PRINCIPAL], 9));
    let program = Path::new(env!("CARGO_BIN_EXE_postern-reconcile"));
    let env = [("KUBECONFIG", kube.kubeconfig.to_str().unwrap())];
    let args = [
        "--config",
        vars.to_str().unwrap(),
        "--endpoints-configmap",
        "postern-endpoints",
    ];

    let first = run_command_with(program, &args, &cloud, &env).await;
    assert!(first.success, "{}\n{}", first.stdout, first.stderr);
    assert!(
        first
            .stdout
            .contains("unchanged: endpoints file in ConfigMap postern-endpoints"),
        "{}",
        first.stdout
    );

    let service = cloud.service().await;
    let allowed = cloud
        .create_endpoint(ALLOWED_KEY, service.service_name().unwrap())
        .await;
    let second = run_command_with(program, &args, &cloud, &env).await;
    assert!(second.success, "{}\n{}", second.stdout, second.stderr);
    let expected = format!(
        "endpoints:\n  - id: \"{allowed}\"\n    owner: \"{ALLOWED_ACCOUNT}\"\n    state: \
         \"available\"\n    region: \"{REGION}\"\n"
    );
    assert_eq!(
        kube.value("postern-endpoints", "endpoints.yaml"),
        Some(expected)
    );
    // The file that the vars file names is left alone.
    assert!(!dir.path().join("endpoints.yaml").exists());

    let missing = [
        "--config",
        vars.to_str().unwrap(),
        "--endpoints-configmap",
        "absent",
    ];
    let failed = run_command_with(program, &missing, &cloud, &env).await;
    assert!(!failed.success);
    assert!(
        failed.stderr.contains("ConfigMap postern/absent"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("postern render"),
        "{}",
        failed.stderr
    );
}

#[tokio::test]
async fn watch_repeats_until_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let cloud = Cloud::start().await;
    cloud.create_private_balancer().await;
    let dir = tempfile::tempdir().unwrap();
    let vars = write_vars(dir.path(), &vars(&[ALLOWED_PRINCIPAL], 9));
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_postern-reconcile"));
    command
        .args(["--config", vars.to_str().unwrap(), "--watch", "200ms"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in cloud.environment() {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    // The first run creates the service, and a later one finds nothing to
    // change.
    let mut seen = Vec::new();
    let limit = std::time::Duration::from_secs(60);
    while !seen.iter().any(|l: &String| l == "plan: no changes") {
        let line = tokio::time::timeout(limit, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no second run within {limit:?}: {seen:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("reconcile --watch exited: {seen:?}"));
        seen.push(line);
    }
    assert!(
        seen.iter()
            .any(|l| l.starts_with("plan: create endpoint service")),
        "{seen:?}"
    );

    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    while let Ok(Some(line)) = lines.next_line().await {
        seen.push(line);
    }
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .expect("reconcile --watch did not stop on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        seen.last().map(String::as_str),
        Some("stopping on a termination signal")
    );
    assert_eq!(cloud.services().await.len(), 1);
}

#[tokio::test]
async fn access_denied_names_call_and_resource() {
    let cloud = Cloud::start().await;
    let balancer = cloud.create_private_balancer().await;
    let dir = tempfile::tempdir().unwrap();
    let vars = write_vars(dir.path(), &vars(&[ALLOWED_PRINCIPAL], 9));
    let (key_id, secret) = cloud
        .create_user_allowed(&["ec2:Describe*", "elasticloadbalancing:Describe*"])
        .await;
    cloud.enforce_iam().await;

    let env = [
        ("AWS_ACCESS_KEY_ID", key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
    ];
    let program = Path::new(env!("CARGO_BIN_EXE_postern-reconcile"));
    let run = run_command_with(program, &["--config", vars.to_str().unwrap()], &cloud, &env).await;

    assert!(!run.success, "{}", run.stdout);
    let expected = format!("CreateVpcEndpointServiceConfiguration on {balancer} was denied");
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("allow ec2:CreateVpcEndpointServiceConfiguration"),
        "{}",
        run.stderr
    );
}
