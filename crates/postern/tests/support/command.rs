//! Running the postern binary as a command and collecting its output.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one command may run before the test kills it and fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs postern with `args` and returns its exit status and output.
pub fn postern(args: &[&str]) -> Output {
    postern_with_input(args, None)
}

/// Runs postern with `args` and `input` on its standard input (a pipe, not
/// a terminal), and returns its exit status and output.
pub fn postern_with_input(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running postern");
    if let Some(input) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // postern may exit before it reads its input, for example on an
        // invalid argument: the pipe is then closed, and the exit status and
        // output below tell what happened.
        match stdin.write_all(input) {
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
            written => written.expect("writing to postern's stdin"),
        }
        // Dropping stdin closes the pipe, so postern sees the end.
    }
    // Read both pipes on threads, so a full pipe cannot stall the process.
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("postern {args:?} did not exit within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Decodes command output as text, replacing invalid UTF-8.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
