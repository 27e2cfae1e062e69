//! Headless Chromium for the sign-in tests: `tests/idp/browser.mjs`
//! (playwright-core) on Debian's chromium, every name under the cluster
//! hostname mapped to 127.0.0.1 and every other name unresolvable.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{CLUSTER_HOSTNAME, within};

/// Time one browser command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A running browser. Dropping it ends the process.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// A page after a navigation.
#[derive(Debug, Clone)]
pub struct Page {
    /// The status of the last response, after redirects.
    pub status: u64,
    pub url: String,
    pub text: String,
}

// === impl Browser ===

impl Browser {
    pub async fn start() -> Browser {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/idp");
        assert!(
            dir.join("node_modules/playwright-core/package.json")
                .exists(),
            "playwright-core is not installed: run tests/idp/setup.sh, which scripts/test.sh \
             runs first"
        );
        let mut child = Command::new("node")
            .arg("browser.mjs")
            .arg(CLUSTER_HOSTNAME)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs browser.mjs (run tests/idp/setup.sh)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut browser = Browser {
            child,
            stdin,
            stdout,
        };
        let ready = browser.read().await;
        assert_eq!(ready["ready"], true, "browser did not start: {ready}");
        browser
    }

    async fn read(&mut self) -> Value {
        let line = within(COMMAND_TIMEOUT, "the browser", self.stdout.next_line())
            .await
            .expect("browser stdout")
            .expect("the browser exited; is chromium installed (tests/idp/setup.sh)?");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("browser said {line:?}"))
    }

    /// Runs one command and returns its answer; panics on an error.
    pub async fn command(&mut self, command: Value) -> Value {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        let answer = self.read().await;
        assert!(answer.get("error").is_none(), "{command}: {answer}");
        answer
    }

    async fn page(&mut self, command: Value) -> Page {
        let answer = self.command(command).await;
        Page {
            status: answer["status"].as_u64().unwrap_or(0),
            url: answer["url"].as_str().unwrap_or_default().to_owned(),
            text: answer["text"].as_str().unwrap_or_default().to_owned(),
        }
    }

    pub async fn goto(&mut self, url: &str) -> Page {
        self.page(json!({ "op": "goto", "url": url })).await
    }

    /// Signs in at the provider's login form as `user`.
    pub async fn login(&mut self, user: &str) -> Page {
        self.page(json!({ "op": "login", "user": user })).await
    }

    pub async fn submit(&mut self, selector: &str) -> Page {
        self.page(json!({ "op": "submit", "selector": selector }))
            .await
    }

    /// Every cookie the browser holds.
    pub async fn cookies(&mut self) -> Vec<Value> {
        let answer = self.command(json!({ "op": "cookies" })).await;
        answer["cookies"].as_array().cloned().unwrap_or_default()
    }

    /// The browser's cookies whose names start with `prefix`.
    pub async fn cookies_named(&mut self, prefix: &str) -> Vec<Value> {
        let mut found: Vec<Value> = self
            .cookies()
            .await
            .into_iter()
            .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .collect();
        found.sort_by_key(|c| c["name"].as_str().unwrap_or_default().to_owned());
        found
    }

    pub async fn set_cookies(&mut self, cookies: Vec<Value>) {
        self.command(json!({ "op": "set_cookies", "cookies": cookies }))
            .await;
    }

    pub async fn clear_cookies(&mut self) {
        self.command(json!({ "op": "clear_cookies" })).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
