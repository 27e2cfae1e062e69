//! A moto server on a free loopback port, from the venv that
//! tests/aws/install-moto.sh fills.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long moto may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `moto_server`. Dropping it kills the process.
pub struct Moto {
    child: Child,
    pub url: String,
}

// === impl Moto ===

impl Moto {
    /// Starts `moto_server`: `$POSTERN_MOTO_SERVER`, or the one in
    /// target/moto-venv.
    pub fn start() -> Moto {
        let program = std::env::var_os("POSTERN_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target/moto-venv/bin/moto_server")
            });
        assert!(
            program.is_file(),
            "{} is missing; run tests/aws/install-moto.sh (scripts/test.sh does) or set \
             POSTERN_MOTO_SERVER",
            program.display()
        );

        // The port is free when checked; moto binds it a moment later.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };

        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < START_TIMEOUT,
                "moto did not listen on port {port} within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
