//! Helpers for the reconcile tests: moto and the fake EC2 front on
//! loopback, the private balancer that the AWS Load Balancer Controller
//! would create, client VPC endpoints from other accounts, the reconcile
//! binary run as a command, and a real `postern serve` private gate.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod cloud;
pub mod fake_ec2;
pub mod fake_kube;
pub mod gate;
pub mod moto;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub use cloud::*;
pub use gate::*;

pub const CLUSTER: &str = "example.test";
pub const REGION: &str = "us-east-1";
/// The account that runs the cluster and the reconcile job.
pub const OPERATOR_ACCOUNT: &str = "123456789012";
pub const OPERATOR_KEY: &str = "AKIDOPERATOR0000";
/// A client account named in `allowed_principals`.
pub const ALLOWED_ACCOUNT: &str = "012345678910";
pub const ALLOWED_KEY: &str = "AKIDALLOWED00000";
/// A second client account, allowed through a role principal.
pub const ROLE_ACCOUNT: &str = "210987654321";
pub const ROLE_KEY: &str = "AKIDROLE00000000";
/// An account that no allowed principal names.
pub const STRANGER_ACCOUNT: &str = "999988887777";
pub const STRANGER_KEY: &str = "AKIDSTRANGER0000";

pub const ALLOWED_PRINCIPAL: &str = "arn:aws:iam::012345678910:root";
pub const ROLE_PRINCIPAL: &str = "arn:aws:iam::210987654321:role/inference-clients";

/// How long one reconcile run may take before the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The vars file: the private gate enabled with `principals`, its
/// endpoints file beside the vars file, and one app on both gates.
pub fn vars(principals: &[&str], upstream_port: u16) -> String {
    let principals: String = principals
        .iter()
        .map(|p| format!("        - {p}\n"))
        .collect();
    format!(
        "\
cluster:
  hostname: {CLUSTER}
  region: {REGION}
  vpc_cidrs: [127.0.1.0/24]
gateways:
  public: {{listen: 127.0.0.1:0}}
  private:
    listen: 127.0.0.3:0
    proxy_protocol: {{trusted_sources: [127.0.0.2/32]}}
  admin: {{listen: 127.0.0.4:0}}
privatelink: {{endpoints_file: endpoints.yaml}}
app_config:
  istio:
    private_gateway:
      enabled: true
      allowed_principals:
{principals}  litellm:
    enabled: true
    upstream: http://127.0.0.1:{upstream_port}
    settings: {{allow_private_gateway: true}}
"
    )
}

/// The same cluster with the private gate switched off.
pub fn vars_disabled() -> String {
    format!(
        "\
cluster: {{hostname: {CLUSTER}, region: {REGION}}}
gateways:
  public: {{listen: 127.0.0.1:0}}
app_config:
  istio:
    private_gateway: {{enabled: false}}
"
    )
}

/// Writes `text` as `vars.yaml` in `dir` and returns its path.
pub fn write_vars(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("vars.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The result of one command run.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program` with `args` against `cloud`, with dummy credentials,
/// no instance metadata and no AWS profile files.
pub async fn run_command(program: &Path, args: &[&str], cloud: &Cloud) -> Run {
    run_command_with(program, args, cloud, &[]).await
}

/// Runs `program` like [`run_command`], with `extra` added to the
/// environment.
pub async fn run_command_with(
    program: &Path,
    args: &[&str],
    cloud: &Cloud,
    extra: &[(&str, &str)],
) -> Run {
    let mut command = tokio::process::Command::new(program);
    command.args(args).kill_on_drop(true);
    for (key, value) in cloud.environment() {
        command.env(key, value);
    }
    for (key, value) in extra {
        command.env(key, value);
    }
    let output: Output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} {args:?} ran longer than {RUN_TIMEOUT:?}",
                program.display()
            )
        })
        .expect("running the command");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `postern-reconcile` with `args`.
pub async fn reconcile(args: &[&str], cloud: &Cloud) -> Run {
    run_command(
        Path::new(env!("CARGO_BIN_EXE_postern-reconcile")),
        args,
        cloud,
    )
    .await
}

/// Runs reconcile on `vars`, and panics with its output if it fails.
pub async fn reconcile_ok(vars: &Path, extra: &[&str], cloud: &Cloud) -> Run {
    let mut args = vec!["--config", vars.to_str().unwrap()];
    args.extend_from_slice(extra);
    let run = reconcile(&args, cloud).await;
    assert!(
        run.success,
        "reconcile {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

/// The `postern` binary, which cargo builds into the same folder.
pub fn postern_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_postern-reconcile")).with_file_name("postern");
    assert!(
        path.is_file(),
        "{} is missing; build it with `cargo build -p postern` (cargo test --workspace does)",
        path.display()
    );
    path
}
