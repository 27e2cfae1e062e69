//! A `postern serve` process on a vars file written into a temporary folder.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::client;

/// The machine token that the default config admits as `build-bot`.
pub const TOKEN: &str = "pst_example_build_bot_token_0001";
/// SHA-256 of [`TOKEN`].
pub const TOKEN_SHA256: &str = "ef713a9461487506d9f18c43e4e5968697a8c95e2db69a36d67fb8660dab6a5f";
pub const MACHINE: &str = "build-bot";

pub const CLUSTER_HOSTNAME: &str = "example.test";
/// The account of the only allowed principal.
pub const ALLOWED_ACCOUNT: &str = "012345678910";
/// Available and owned by the allowed account.
pub const ENDPOINT_ALLOWED: &str = "vpce-0a1b2c3d4e5f60001";
/// Available, but owned by an account nobody allowed.
pub const ENDPOINT_OTHER_OWNER: &str = "vpce-0a1b2c3d4e5f60002";
/// Owned by the allowed account, but still `pendingAcceptance`.
pub const ENDPOINT_PENDING: &str = "vpce-0a1b2c3d4e5f60003";
/// Well formed and absent from the endpoints file.
pub const ENDPOINT_UNKNOWN: &str = "vpce-0a1b2c3d4e5f69999";

/// The endpoints file that [`GatewaySpec::new`] writes.
pub const DEFAULT_ENDPOINTS: &str = "\
endpoints:
  - id: vpce-0a1b2c3d4e5f60001
    owner: \"012345678910\"
    state: available
  - id: vpce-0a1b2c3d4e5f60002
    owner: \"999988887777\"
    state: available
  - id: vpce-0a1b2c3d4e5f60003
    owner: \"012345678910\"
    state: pendingAcceptance
";

/// How long a gateway may take to start and report ready.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the `wait_for_*` helpers poll before they fail the test.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns the public gate's host for `app`.
pub fn public_host(app: &str) -> String {
    format!("{app}.{CLUSTER_HOSTNAME}")
}

/// Returns the private gate's host for `app`.
pub fn private_host(app: &str) -> String {
    format!("{app}.internal.{CLUSTER_HOSTNAME}")
}

/// One entry under `app_config`.
#[derive(Debug, Clone)]
pub struct AppSpec {
    pub name: String,
    pub upstream: Option<SocketAddr>,
    pub enabled: bool,
    pub allow_private_gateway: bool,
    /// `timeouts` keys and values, such as `("response_headers", "500ms")`.
    pub timeouts: Vec<(String, String)>,
}

/// What goes into the vars file and the endpoints file.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub apps: Vec<AppSpec>,
    pub private_gate: bool,
    /// `gateways.private.listen`.
    pub private_listen: String,
    pub private_proxy_sources: Vec<String>,
    pub public_proxy_sources: Vec<String>,
    /// `gateways.public.forwarded_headers.trusted_sources`.
    pub public_forwarded_sources: Vec<String>,
    /// PEM certificate chain and key for both gates, written as `tls.crt`
    /// and `tls.key` beside the vars file.
    pub tls: Option<(String, String)>,
    pub proxy_header_timeout: Option<String>,
    /// `limits` keys and values.
    pub limits: Vec<(String, String)>,
    /// Machine names and token hashes.
    pub machines: Vec<(String, String)>,
    /// More `identities` keys, as YAML lines indented by two spaces.
    pub identities_yaml: String,
    /// More files beside the vars file, by name, such as signing keys.
    pub files: Vec<(String, String)>,
    pub endpoints_yaml: String,
    /// `--workers`; 1 unless a test needs more.
    pub workers: usize,
}

/// A running gateway. Dropping it kills the process.
pub struct Gateway {
    child: Child,
    dir: TempDir,
    pub public: SocketAddr,
    pub private: Option<SocketAddr>,
    pub admin: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

// === impl AppSpec ===

impl AppSpec {
    /// Creates an enabled app, served on the public gate only.
    pub fn new(name: &str, upstream: SocketAddr) -> Self {
        AppSpec {
            name: name.to_owned(),
            upstream: Some(upstream),
            enabled: true,
            allow_private_gateway: false,
            timeouts: Vec::new(),
        }
    }

    /// Also serves the app on the private gate.
    pub fn private(mut self) -> Self {
        self.allow_private_gateway = true;
        self
    }

    pub fn disabled(mut self) -> Self {
        self.enabled = false;
        self
    }

    pub fn timeout(mut self, key: &str, value: &str) -> Self {
        self.timeouts.push((key.to_owned(), value.to_owned()));
        self
    }

    fn write_yaml(&self, out: &mut String) {
        out.push_str(&format!("  {}:\n", self.name));
        out.push_str(&format!("    enabled: {}\n", self.enabled));
        if let Some(upstream) = self.upstream {
            out.push_str(&format!("    upstream: http://{upstream}\n"));
        }
        if self.allow_private_gateway {
            out.push_str("    settings:\n      allow_private_gateway: true\n");
        }
        if !self.timeouts.is_empty() {
            out.push_str("    timeouts:\n");
            for (key, value) in &self.timeouts {
                out.push_str(&format!("      {key}: {value}\n"));
            }
        }
    }
}

// === impl GatewaySpec ===

impl Default for GatewaySpec {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewaySpec {
    /// No apps yet, the private gate enabled with 127.0.0.2 as its trusted
    /// source, the `build-bot` machine, and [`DEFAULT_ENDPOINTS`].
    pub fn new() -> Self {
        GatewaySpec {
            apps: Vec::new(),
            private_gate: true,
            private_listen: "127.0.0.3:0".to_owned(),
            private_proxy_sources: vec!["127.0.0.2/32".to_owned()],
            public_proxy_sources: Vec::new(),
            public_forwarded_sources: Vec::new(),
            tls: None,
            proxy_header_timeout: None,
            limits: Vec::new(),
            machines: vec![(MACHINE.to_owned(), TOKEN_SHA256.to_owned())],
            identities_yaml: String::new(),
            files: Vec::new(),
            endpoints_yaml: DEFAULT_ENDPOINTS.to_owned(),
            workers: 1,
        }
    }

    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    pub fn app(mut self, app: AppSpec) -> Self {
        self.apps.push(app);
        self
    }

    pub fn proxy_header_timeout(mut self, value: &str) -> Self {
        self.proxy_header_timeout = Some(value.to_owned());
        self
    }

    pub fn public_proxy_source(mut self, cidr: &str) -> Self {
        self.public_proxy_sources.push(cidr.to_owned());
        self
    }

    pub fn public_forwarded_source(mut self, cidr: &str) -> Self {
        self.public_forwarded_sources.push(cidr.to_owned());
        self
    }

    /// Serves both gates over TLS with this certificate chain and key (PEM).
    pub fn tls(mut self, cert_pem: &str, key_pem: &str) -> Self {
        self.tls = Some((cert_pem.to_owned(), key_pem.to_owned()));
        self
    }

    pub fn limit(mut self, key: &str, value: &str) -> Self {
        self.limits.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn private_listen(mut self, addr: SocketAddr) -> Self {
        self.private_listen = addr.to_string();
        self
    }

    /// Adds YAML lines under `identities`, indented by two spaces.
    pub fn identities(mut self, yaml: &str) -> Self {
        self.identities_yaml.push_str(yaml);
        self
    }

    /// Writes a file beside the vars file.
    pub fn file(mut self, name: &str, text: &str) -> Self {
        self.files.push((name.to_owned(), text.to_owned()));
        self
    }

    pub fn without_private_gate(mut self) -> Self {
        self.private_gate = false;
        self
    }

    /// Renders the vars file. Every listener requests port 0 on its own
    /// loopback address (the config rejects two listeners on one address),
    /// and [`Gateway`] learns the real ports from the startup log line.
    pub fn vars_yaml(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "cluster:\n  hostname: {CLUSTER_HOSTNAME}\n  region: us-east-1\n  vpc_cidrs:\n    - 127.0.1.0/24\n"
        ));

        let tls = if self.tls.is_some() {
            "    tls:\n      cert: tls.crt\n      key: tls.key\n"
        } else {
            ""
        };
        out.push_str("gateways:\n  public:\n    listen: 127.0.0.1:0\n");
        out.push_str(tls);
        if !self.public_proxy_sources.is_empty() {
            out.push_str("    proxy_protocol:\n      trusted_sources:\n");
            for cidr in &self.public_proxy_sources {
                out.push_str(&format!("        - {cidr}\n"));
            }
        }
        if !self.public_forwarded_sources.is_empty() {
            out.push_str("    forwarded_headers:\n      trusted_sources:\n");
            for cidr in &self.public_forwarded_sources {
                out.push_str(&format!("        - {cidr}\n"));
            }
        }
        out.push_str(&format!(
            "  private:\n    listen: {}\n",
            self.private_listen
        ));
        out.push_str(tls);
        out.push_str("    proxy_protocol:\n");
        out.push_str("      trusted_sources:\n");
        for cidr in &self.private_proxy_sources {
            out.push_str(&format!("        - {cidr}\n"));
        }
        if let Some(timeout) = &self.proxy_header_timeout {
            out.push_str(&format!("      header_timeout: {timeout}\n"));
        }
        out.push_str("  admin:\n    listen: 127.0.0.4:0\n");

        out.push_str("privatelink:\n  endpoints_file: endpoints.yaml\n");

        if !self.machines.is_empty() || !self.identities_yaml.is_empty() {
            out.push_str("identities:\n");
        }
        if !self.machines.is_empty() {
            out.push_str("  machines:\n");
            for (name, hash) in &self.machines {
                out.push_str(&format!("    - name: {name}\n      token_sha256: {hash}\n"));
            }
        }
        out.push_str(&self.identities_yaml);

        if !self.limits.is_empty() {
            out.push_str("limits:\n");
            for (key, value) in &self.limits {
                out.push_str(&format!("  {key}: {value}\n"));
            }
        }

        out.push_str("app_config:\n  istio:\n    private_gateway:\n");
        out.push_str(&format!("      enabled: {}\n", self.private_gate));
        out.push_str(&format!(
            "      allowed_principals:\n        - arn:aws:iam::{ALLOWED_ACCOUNT}:root\n"
        ));
        for app in &self.apps {
            app.write_yaml(&mut out);
        }
        out
    }

    /// Writes the files into a new temporary folder and starts the gateway.
    pub async fn start(&self) -> Gateway {
        self.start_with_vars(&self.vars_yaml()).await
    }

    /// Like [`GatewaySpec::start`], with `vars` in place of the rendered
    /// vars file.
    pub async fn start_with_vars(&self, vars: &str) -> Gateway {
        let gateway = self.start_unready(vars).await;
        gateway.wait_ready().await;
        gateway
    }

    /// Starts the gateway on `vars` without waiting for `/readyz`.
    pub async fn start_unready(&self, vars: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("creating a temporary folder");
        for (name, text) in &self.files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        std::fs::write(dir.path().join("vars.yaml"), vars).unwrap();
        std::fs::write(dir.path().join("endpoints.yaml"), &self.endpoints_yaml).unwrap();
        if let Some((cert, key)) = &self.tls {
            std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
            std::fs::write(dir.path().join("tls.key"), key).unwrap();
        }
        Gateway::start(dir, self.workers).await
    }
}

// === impl Gateway ===

impl Gateway {
    /// Starts `postern serve` on the `vars.yaml` in `dir`.
    async fn start(dir: TempDir, workers: usize) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
            .arg("serve")
            .arg("--config")
            .arg(dir.path().join("vars.yaml"))
            // One worker unless the test sets more, so that every
            // connection shares one upstream pool and tests of pooling do
            // not depend on which worker serves a connection. The
            // quickstart and end-to-end tests run the default of one worker
            // per CPU.
            .arg("--workers")
            .arg(workers.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting postern");
        let stdout = collect_lines(child.stdout.take().unwrap());
        let stderr = collect_lines(child.stderr.take().unwrap());

        // The startup line names the addresses the kernel picked.
        let started = Instant::now();
        let line = loop {
            let found = parsed_lines(&stderr)
                .into_iter()
                .find(|l| l["message"] == "postern started");
            if let Some(line) = found {
                break line;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "postern exited with {status} before it started; stderr:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                panic!(
                    "postern did not log its start within {START_TIMEOUT:?}; stderr:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // The private gate's field is `disabled` when it is off.
        let address = |key: &str| -> Option<SocketAddr> { line[key].as_str()?.parse().ok() };
        Gateway {
            public: address("public").expect("the startup line names the public address"),
            private: address("private"),
            admin: address("admin").expect("the startup line names the admin address"),
            child,
            dir,
            stdout,
            stderr,
        }
    }

    /// Polls `/readyz` until it returns 200.
    pub async fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let ready = client::admin_get(self.admin, "/readyz").await;
            if ready.is_ok_and(|response| response.status == 200) {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "/readyz did not return 200 within {START_TIMEOUT:?}; stderr:\n{}",
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Returns the private gate's address, and panics if it is not open.
    pub fn private_gate(&self) -> SocketAddr {
        self.private.expect("the private gate is open")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn vars_path(&self) -> PathBuf {
        self.dir.path().join("vars.yaml")
    }

    pub fn endpoints_path(&self) -> PathBuf {
        self.dir.path().join("endpoints.yaml")
    }

    /// Replaces the vars file the way GitOps tools do: write a sibling file,
    /// then rename it over the old one.
    pub fn replace_vars(&self, text: &str) {
        replace_file(&self.vars_path(), text);
    }

    pub fn replace_endpoints(&self, text: &str) {
        replace_file(&self.endpoints_path(), text);
    }

    /// Replaces a file beside the vars file, such as `tls.crt`.
    pub fn replace_file(&self, name: &str, text: &str) {
        replace_file(&self.dir.path().join(name), text);
    }

    /// Waits until the gateway watches its files, and returns the number of
    /// endpoints reloads so far. `/readyz` returns 200 before the file
    /// watcher starts, so an edit made at once can go unnoticed. This
    /// rewrites the endpoints file unchanged until a reload shows in the
    /// metrics.
    pub async fn wait_for_file_watch(&self) -> f64 {
        let reloads = [("file", "endpoints")];
        let text = std::fs::read_to_string(self.endpoints_path()).unwrap();
        let started = Instant::now();
        let before = self.metric("postern_config_reloads_total", &reloads).await;
        loop {
            replace_file(&self.endpoints_path(), &text);
            let attempt = Instant::now();
            while attempt.elapsed() < Duration::from_millis(500) {
                let now = self.metric("postern_config_reloads_total", &reloads).await;
                if now > before {
                    return now;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                started.elapsed() < WAIT_TIMEOUT,
                "no reload followed a rewrite of the endpoints file; stderr:\n{}",
                self.stderr_text()
            );
        }
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the process with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg("-s")
            .arg(name)
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -s {name} failed with {status}");
    }

    /// Waits for the process to exit on its own.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "postern did not exit within {limit:?}; stderr:\n{}",
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Access log lines (stdout), parsed.
    pub fn access_log(&self) -> Vec<Value> {
        parsed_lines(&self.stdout)
    }

    /// Diagnostic lines (stderr), parsed.
    pub fn diagnostics(&self) -> Vec<Value> {
        parsed_lines(&self.stderr)
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn stdout_text(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// Waits for an access log line that matches `matches`.
    pub async fn wait_for_access_log(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        wait_for_line(&self.stdout, what, matches).await
    }

    /// Waits for a diagnostic line that matches `matches`.
    pub async fn wait_for_diagnostic(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        wait_for_line(&self.stderr, what, matches).await
    }

    /// Waits for the access log line of the request with this `X-Request-Id`.
    pub async fn access_log_for(&self, request_id: &str) -> Value {
        self.wait_for_access_log(&format!("the access log line of {request_id}"), |line| {
            line["request_id"] == request_id
        })
        .await
    }

    /// Fetches the admin `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = client::admin_get(self.admin, "/metrics")
            .await
            .expect("GET /metrics");
        assert_eq!(response.status, 200, "GET /metrics");
        response.text()
    }

    /// Returns the sum of every sample of `name` whose labels include `labels`, or
    /// 0 when there is none.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics().await, name, labels)
    }

    /// Waits until [`Gateway::metric`] reaches `expected`, and returns it.
    pub async fn wait_for_metric(&self, name: &str, labels: &[(&str, &str)], expected: f64) -> f64 {
        let started = Instant::now();
        loop {
            let text = self.metrics().await;
            let value = metric_sum(&text, name, labels);
            if value >= expected {
                return value;
            }
            if started.elapsed() > WAIT_TIMEOUT {
                let samples: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
                panic!(
                    "{name}{labels:?} is {value}, expected {expected}; samples:\n{}\nstderr:\n{}",
                    samples.join("\n"),
                    self.stderr_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replace_file(path: &Path, text: &str) {
    let mut name = path.file_name().unwrap().to_os_string();
    name.push(".new");
    let temporary = path.with_file_name(name);
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// Reads lines from a child's pipe on a thread until the pipe closes.
pub fn collect_lines(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else {
                break;
            };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn parsed_lines(lines: &Mutex<Vec<String>>) -> Vec<Value> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn wait_for_line(
    lines: &Mutex<Vec<String>>,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        if let Some(line) = parsed_lines(lines).into_iter().find(|l| matches(l)) {
            return line;
        }
        if started.elapsed() > WAIT_TIMEOUT {
            panic!(
                "no line matched {what} within {WAIT_TIMEOUT:?}; lines:\n{}",
                lines.lock().unwrap().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sums the samples of `name` in Prometheus text whose labels include every
/// pair in `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(inside) = rest.strip_prefix('{') {
            let Some((labels, value)) = inside.split_once('}') else {
                continue;
            };
            (labels, value)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            // A longer metric name that starts with `name`.
            continue;
        };
        let sample = parse_labels(label_text);
        let all_match = labels
            .iter()
            .all(|(k, v)| sample.iter().any(|(sk, sv)| sk == k && sv == v));
        if all_match {
            sum += value.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').trim().to_owned(), value));
        rest = &after[end..];
    }
    labels
}
