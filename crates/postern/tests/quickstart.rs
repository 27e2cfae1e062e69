//! `postern quickstart`: every curl command it prints does what the comment
//! above it promises, and the demo stops cleanly on SIGTERM.

mod support;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// How many consecutive ports the demo takes from its base port.
const DEMO_PORTS: u16 = 10;

/// Finds a base port whose next `DEMO_PORTS` ports are free on 127.0.0.1.
/// Another process may still take one before the demo binds it. The demo
/// then fails to start, which fails the test instead of hanging it.
fn free_port_range() -> u16 {
    for attempt in 0..50u16 {
        let base = 20_000 + (std::process::id() as u16 % 1000) * 30 + attempt * 97;
        let listeners: Vec<_> = (base..base + DEMO_PORTS)
            .map_while(|port| TcpListener::bind(("127.0.0.1", port)).ok())
            .collect();
        if listeners.len() == DEMO_PORTS as usize {
            return base;
        }
    }
    panic!("no {DEMO_PORTS} consecutive free ports found");
}

/// The outcome a comment in the demo's output promises.
#[derive(Debug, PartialEq)]
enum Promise {
    Status(u16),
    /// The connection is closed without a response.
    Closed,
}

fn promise(comment: &str) -> Promise {
    if comment.starts_with("Admitted") {
        return Promise::Status(200);
    }
    if comment.starts_with("Closed") {
        return Promise::Closed;
    }
    let status = comment
        .strip_prefix("Rejected with ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a comment with no outcome: {comment:?}"));
    Promise::Status(status)
}

#[tokio::test]
async fn printed_commands_do_what_they_say() {
    let base = free_port_range();
    let temporary = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["quickstart", "--port", &base.to_string()])
        .env("TMPDIR", temporary.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = collect_lines(child.stdout.take().unwrap());
    let stderr = collect_lines(child.stderr.take().unwrap());
    // Kill the demo if an assertion below fails.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(child);

    let started = Instant::now();
    while !stdout
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("Access log lines follow"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the demo printed no commands; stderr:\n{}",
            stderr.lock().unwrap().join("\n")
        );
        assert!(child.0.try_wait().unwrap().is_none(), "the demo exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let admin = format!("127.0.0.1:{}", base + 2).parse().unwrap();
    let ready = admin_get(admin, "/readyz")
        .await
        .expect("the demo's /readyz");
    assert_eq!(ready.status, 200);

    let lines = stdout.lock().unwrap().clone();
    let mut checked = 0;
    for pair in lines.windows(2) {
        let (Some(comment), Some(command)) = (
            pair[0].trim().strip_prefix("# "),
            pair[1].trim().strip_prefix("curl "),
        ) else {
            continue;
        };
        let expected = promise(comment);
        // Streams are cut after a few events, and every other command must
        // finish.
        let streaming = command.starts_with("-sSN ");
        let max_time = if streaming { "1.5" } else { "5" };
        let script =
            format!("curl {command} -o /dev/null -w '%{{http_code}}' --max-time {max_time}");
        let output = Command::new("timeout")
            .args(["10", "sh", "-c", &script])
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&output.stdout).into_owned();
        let exit = output.status.code();

        match expected {
            Promise::Status(code) => {
                assert_eq!(status, code.to_string(), "{comment}: {script}");
                let exit_ok = exit == Some(0) || (streaming && exit == Some(28));
                assert!(exit_ok, "{comment}: curl exited with {exit:?}");
            }
            Promise::Closed => {
                assert_eq!(status, "000", "{comment}: {script}");
                // curl exits with 52 on an empty reply and 56 on a reset.
                assert!(
                    matches!(exit, Some(52 | 56)),
                    "{comment}: curl exited with {exit:?}"
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 12,
        "only {checked} commands were found in:\n{}",
        lines.join("\n")
    );

    let metrics_line = lines
        .iter()
        .find(|l| l.contains("/metrics | grep"))
        .expect("the metrics command")
        .trim()
        .to_owned();
    let output = Command::new("timeout")
        .args(["10", "sh", "-c", &metrics_line])
        .output()
        .unwrap();
    assert!(output.status.success(), "{metrics_line}");
    let metrics = String::from_utf8_lossy(&output.stdout);
    assert!(metrics.contains("postern_refusals_total"), "{metrics}");

    let status = Command::new("kill")
        .args(["-s", "TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the demo did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(exit.code(), Some(0));
    let left: Vec<_> = std::fs::read_dir(temporary.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left files behind: {left:?}");
}
