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
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("vars.yaml");
    std::fs::write(&vars, spec.vars_yaml()).unwrap();
    std::fs::write(dir.path().join("endpoints.yaml"), &spec.endpoints_yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["serve", "--gate", gate, "--config"])
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
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let relay = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["relay", "--listen", &listen.to_string()])
        .args(["--to", &gateway.private_gate().to_string()])
        .args(["--endpoint-id", "vpce-0a1b2c3d4e5f60001"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the relay");
    let _relay = Process {
        child: relay,
        stderr: Default::default(),
    };

    let started = Instant::now();
    while try_connect_from(LOCALHOST, listen).await.is_err() {
        assert!(started.elapsed() < START_TIMEOUT, "the relay did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
