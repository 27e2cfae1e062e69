//! `serve --gate`: one process per gate, as the Kubernetes deployments run.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `postern serve --gate GATE` process; killed on drop.
struct Process {
    child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve --gate gate` on the vars file of `spec` and returns the
/// process with its startup log line, or its exit status if it stopped.
async fn start(spec: &GatewaySpec, gate: &str) -> (Process, Result<Value, i32>) {
    start_with_args(spec, &["serve", "--gate", gate, "--config"]).await
}

/// Starts postern with `args` and then the path of the vars file of `spec`,
/// as [`start`] does.
async fn start_with_args(spec: &GatewaySpec, args: &[&str]) -> (Process, Result<Value, i32>) {
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("vars.yaml");
    std::fs::write(&vars, spec.vars_yaml()).unwrap();
    std::fs::write(dir.path().join("endpoints.yaml"), &spec.endpoints_yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        .arg(&vars)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting postern");
    let stderr = collect_lines(child.stderr.take().unwrap());

    let started = Instant::now();
    loop {
        let line = stderr
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["message"] == "postern started");
        if let Some(line) = line {
            return (Process { child, stderr }, Ok(line));
        }
        if let Some(status) = child.try_wait().unwrap() {
            let code = status.code().unwrap_or(-1);
            std::mem::forget(dir);
            return (Process { child, stderr }, Err(code));
        }
        assert!(started.elapsed() < START_TIMEOUT, "postern did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Returns the stderr of a process that exited, once it contains `wanted`
/// or after a short wait. The process may exit before the thread reading
/// its stderr has stored the last line.
async fn stderr_with(process: &Process, wanted: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stderr = process.stderr.lock().unwrap().join("\n");
        if stderr.contains(wanted) || Instant::now() > deadline {
            return stderr;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts `postern relay` in front of the private gate of `gateway`, with
/// the endpoint [`ENDPOINT_ALLOWED`] and `extra` arguments, and waits until
/// it accepts connections. Returns the process and its listen address.
async fn start_relay(gateway: &Gateway, extra: &[&str]) -> (Process, std::net::SocketAddr) {
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["relay", "--listen", &listen.to_string()])
        .args(["--to", &gateway.private_gate().to_string()])
        .args(["--endpoint-id", ENDPOINT_ALLOWED])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the relay");
    let stderr = collect_lines(child.stderr.take().unwrap());
    let relay = Process { child, stderr };

    let started = Instant::now();
    while try_connect_from(LOCALHOST, listen).await.is_err() {
        assert!(started.elapsed() < START_TIMEOUT, "the relay did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (relay, listen)
}

fn spec() -> GatewaySpec {
    GatewaySpec::new().app(AppSpec::new("echo", "127.0.0.1:9".parse().unwrap()).private())
}

#[tokio::test]
async fn gate_public_opens_only_public() {
    let (_process, line) = start(&spec(), "public").await;
    let line = line.expect("postern started");
    assert!(
        line["public"]
            .as_str()
            .unwrap()
            .parse::<std::net::SocketAddr>()
            .is_ok()
    );
    assert_eq!(line["private"], "disabled");
}

#[tokio::test]
async fn gate_private_opens_only_private() {
    let (_process, line) = start(&spec(), "private").await;
    let line = line.expect("postern started");
    assert_eq!(line["public"], "disabled");
    assert!(
        line["private"]
            .as_str()
            .unwrap()
            .parse::<std::net::SocketAddr>()
            .is_ok()
    );
}

#[tokio::test]
async fn gate_private_needs_private_gate() {
    let (process, outcome) = start(&spec().without_private_gate(), "private").await;
    assert_eq!(outcome.unwrap_err(), 1);
    let wanted = "--gate private needs the private gate";
    let stderr = stderr_with(&process, wanted).await;
    assert!(stderr.contains(wanted), "{stderr}");
}

#[tokio::test]
async fn relay_command_plays_the_balancer() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr).private())
        .start()
        .await;
    let (_relay, listen) = start_relay(&gateway, &[]).await;
    let response = get(listen, &private_host("echo"), "/via-relay", &[]).await;
    assert_eq!(response.status, 200);
    let line = gateway
        .wait_for_access_log("the relayed request", |l| l["path"] == "/via-relay")
        .await;
    assert_eq!(line["endpoint_id"], "vpce-0a1b2c3d4e5f60001");
}

#[tokio::test]
async fn gate_port_shared_by_another_process() {
    // Another process listening with SO_REUSEPORT, as a second postern
    // would: joining its group would split the connections between the two.
    let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    other.set_reuse_port(true).unwrap();
    other
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    other.listen(16).unwrap();
    let taken = other.local_addr().unwrap().as_socket().unwrap();

    let (process, outcome) = start(&spec().private_listen(taken), "private").await;
    assert_eq!(outcome.unwrap_err(), 1);
    let wanted = "gateways.private.listen";
    let stderr = stderr_with(&process, wanted).await;
    assert!(stderr.contains(wanted), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}

#[tokio::test]
async fn serve_takes_file_and_warns() {
    // The app allows the private gate, which is disabled: valid, but it
    // serves nothing there.
    let (process, line) = start_with_args(&spec().without_private_gate(), &["serve"]).await;
    let line = line.expect("postern started from `serve FILE`");
    assert_eq!(line["private"], "disabled");

    let key = "app_config.echo.settings.allow_private_gateway";
    let stderr = stderr_with(&process, key).await;
    let warning = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "Config warning")
        .unwrap_or_else(|| panic!("no config warning in:\n{stderr}"));
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["key"], key, "{warning}");
    assert!(warning["line"].as_u64().unwrap() > 0, "{warning}");
    assert!(
        warning["warning"]
            .as_str()
            .unwrap()
            .starts_with("the private gate is disabled, so no listener serves echo privately"),
        "{warning}"
    );
}

#[tokio::test]
async fn serve_names_unavailable_address() {
    // 192.0.2.1 (TEST-NET-1) is assigned to no interface here, so binding
    // it fails with EADDRNOTAVAIL. Binding sends no packet.
    let unavailable = "192.0.2.1:18081".parse().unwrap();
    let (process, outcome) = start(&spec().private_listen(unavailable), "private").await;
    assert_eq!(outcome.unwrap_err(), 1);

    let wanted = "is not an address of this host";
    let stderr = stderr_with(&process, wanted).await;
    assert!(
        stderr.contains(
            "192.0.2.1 is not an address of this host; set gateways.private.listen to an \
             address of this host (this host has 127.0.0.1:18081"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("), or 0.0.0.0:18081 for all of them"),
        "{stderr}"
    );
    assert!(!stderr.contains("free the port"), "{stderr}");
}

#[tokio::test]
async fn relay_from_untrusted_address_explained() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr).private())
        .start()
        .await;
    // 127.0.0.3 is neither the trusted balancer (127.0.0.2) nor in the
    // VPC (127.0.1.0/24).
    let (relay, listen) = start_relay(&gateway, &["--from", "127.0.0.3"]).await;
    let mut stream = connect_from(LOCALHOST, listen).await;
    write_ignoring_errors(&mut stream, &raw_get(&private_host("echo"), "/", "")).await;
    assert_closed_without_response(&mut stream, RESPONSE_TIMEOUT, "relay from 127.0.0.3").await;

    let refused = gateway
        .wait_for_diagnostic("the refusal", |l| l["message"] == "Connection refused")
        .await;
    assert_eq!(refused["reason"], "peer_not_in_vpc");
    let peer = refused["peer"].as_str().unwrap();
    assert!(peer.starts_with("127.0.0.3:"), "{refused}");
    let detail = refused["detail"].as_str().unwrap();
    assert!(
        detail.contains("gateways.private.proxy_protocol.trusted_sources"),
        "{detail}"
    );
    assert!(detail.contains("`postern relay --from`"), "{detail}");

    let wanted = "The gate closed the connection without a response";
    let relay_log = stderr_with(&relay, wanted).await;
    assert!(relay_log.contains(wanted), "{relay_log}");
    assert!(relay_log.contains("--from"), "{relay_log}");
    assert!(relay_log.contains("\"from\":\"127.0.0.3\""), "{relay_log}");
    assert_eq!(echo.hits(), 0);
}
