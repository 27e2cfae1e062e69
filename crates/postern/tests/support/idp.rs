//! A real OpenID provider for the JWT tests: npm `oidc-provider`, run by
//! `tests/idp/idp.mjs` with Node.js on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::client::{self, HttpResponse, connect_from, full_body, request, send_http1};
use super::{LOCALHOST, collect_lines};

/// The client-credentials client registered at the provider.
pub const IDP_CLIENT: (&str, &str) = ("svc", "svc-secret");
/// The audience of the provider's access tokens that the gateway accepts.
pub const IDP_AUDIENCE: &str = "urn:postern:test";
/// An audience whose tokens live one second.
pub const IDP_SHORT_AUDIENCE: &str = "urn:postern:short";

/// A running provider. Dropping it stops the process.
pub struct Idp {
    child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub issuer: String,
    pub addr: SocketAddr,
}

// === impl Idp ===

impl Idp {
    /// Starts a provider on a free port.
    pub async fn start() -> Idp {
        Idp::start_on(0).await
    }

    /// Starts a provider on `port`, or a free one for 0.
    pub async fn start_on(port: u16) -> Idp {
        let dir = idp_dir();
        let installed = dir.join("node_modules/oidc-provider/package.json");
        assert!(
            installed.exists(),
            "the test identity provider is not installed ({} is missing): \
             run tests/idp/setup.sh, which scripts/test.sh runs first",
            installed.display()
        );
        let mut child = Command::new("node")
            .arg("idp.mjs")
            .arg(port.to_string())
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run node ({e}); the JWT tests need Node.js: run tests/idp/setup.sh, \
                     which scripts/test.sh runs first"
                )
            });
        let stderr = collect_lines(child.stderr.take().unwrap());
        let stdout = child.stdout.take().unwrap();
        let first = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = super::within(
            std::time::Duration::from_secs(15),
            "the IdP to start",
            first,
        )
        .await
        .unwrap()
        .unwrap();
        let started: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "the IdP did not start; stdout {line:?}, stderr:\n{}",
                stderr.lock().unwrap().join("\n")
            )
        });
        let port = started["port"].as_u64().unwrap() as u16;
        Idp {
            child,
            stderr,
            issuer: started["issuer"].as_str().unwrap().to_owned(),
            addr: SocketAddr::new(LOCALHOST, port),
        }
    }

    /// Gets an access token with the client-credentials grant for
    /// `audience` (a resource indicator).
    pub async fn client_credentials(&self, audience: &str) -> String {
        let body = format!("grant_type=client_credentials&resource={audience}");
        let response = post_form(self.addr, "127.0.0.1", "/token", Some(IDP_CLIENT), &body).await;
        assert_eq!(response.status, 200, "IdP token: {}", response.text());
        response.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// Signs `claims` with the provider's current key for the header's
    /// `alg` (RS256 unless given).
    pub async fn sign(&self, header: Value, claims: Value) -> String {
        let body = json!({ "header": header, "claims": claims }).to_string();
        let response = post_json(self.addr, "/test/sign", &body).await;
        assert_eq!(response.status, 200, "IdP sign: {}", response.text());
        response.json()["token"].as_str().unwrap().to_owned()
    }

    /// Replaces the signing keys; the old ones stay published with
    /// `keep_old`.
    pub async fn rotate(&self, keep_old: bool) {
        let body = json!({ "keep_old": keep_old }).to_string();
        let response = post_json(self.addr, "/test/rotate", &body).await;
        assert_eq!(response.status, 200, "IdP rotate: {}", response.text());
    }

    /// Sends the provider's process a signal, such as `STOP` (it then
    /// accepts connections and never answers) or `KILL`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -s {name} failed with {status}");
    }

    /// What the provider wrote to stderr so far, for failure messages.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Registers postern's client: its callback and post-logout URLs on
    /// the auth origin, and the lifetime of its access tokens.
    pub async fn register_postern(&self, auth_origin: &str, access_token_ttl: u64) {
        let body = json!({
            "redirect_uris": [format!("{auth_origin}/oauth2/callback")],
            "post_logout_redirect_uris": [format!("{auth_origin}/oauth2/signed_out")],
            "access_token_ttl": access_token_ttl,
        })
        .to_string();
        let response = post_json(self.addr, "/test/postern", &body).await;
        assert_eq!(response.status, 200, "IdP register: {}", response.text());
    }

    /// The provider's counters: `jwks_requests`, `refreshes`,
    /// `refresh_failures` and `sign_outs`.
    pub async fn stats(&self) -> Value {
        let stream = connect_from(LOCALHOST, self.addr).await;
        let get = request("GET", "127.0.0.1", "/test/stats")
            .body(client::empty_body())
            .unwrap();
        send_http1(stream, get).await.unwrap().json()
    }

    /// The number of JWKS requests the provider has served.
    pub async fn jwks_requests(&self) -> u64 {
        let stream = connect_from(LOCALHOST, self.addr).await;
        let get = request("GET", "127.0.0.1", "/test/stats")
            .body(client::empty_body())
            .unwrap();
        let response = send_http1(stream, get).await.unwrap();
        response.json()["jwks_requests"].as_u64().unwrap()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/idp")
}

/// POSTs a form to `addr` with Host `host`, with HTTP Basic client
/// authentication when `basic` is given.
pub async fn post_form(
    addr: SocketAddr,
    host: &str,
    path: &str,
    basic: Option<(&str, &str)>,
    body: &str,
) -> HttpResponse {
    use base64::Engine;
    let mut builder =
        request("POST", host, path).header("content-type", "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        builder = builder.header("authorization", format!("Basic {encoded}"));
    }
    let stream = connect_from(LOCALHOST, addr).await;
    send_http1(stream, builder.body(full_body(body.to_owned())).unwrap())
        .await
        .unwrap_or_else(|e| panic!("POST {host}{path} via {addr}: {e}"))
}

async fn post_json(addr: SocketAddr, path: &str, body: &str) -> HttpResponse {
    let stream = connect_from(LOCALHOST, addr).await;
    let post = request("POST", "127.0.0.1", path)
        .header("content-type", "application/json")
        .body(full_body(body.to_owned()))
        .unwrap();
    send_http1(stream, post).await.unwrap()
}
