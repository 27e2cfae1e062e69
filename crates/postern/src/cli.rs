//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::runtime::serve::GateSelection;

/// postern: an ingress gateway with a zero-trust public gate and a private
/// gate for AWS PrivateLink.
#[derive(Debug, Parser)]
#[command(name = "postern", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gates that a vars file describes until SIGTERM or SIGINT.
    ///
    /// SIGHUP, or a change to the vars or endpoints file, reloads both
    /// files; a file that fails validation is logged and the running config
    /// stays. Access log lines go to stdout, diagnostics to stderr.
    Serve {
        /// The vars file.
        #[arg(value_name = "FILE", required_unless_present = "config")]
        file: Option<PathBuf>,
        /// The vars file, in place of FILE.
        #[arg(long, short = 'c', value_name = "FILE", conflicts_with = "file")]
        config: Option<PathBuf>,
        /// The gates to serve: all, or only public or only private, for
        /// deployments that run each gate in its own pods. The admin
        /// listener always runs.
        #[arg(long, value_enum, default_value_t = GateSelection::All)]
        gate: GateSelection,
        /// Worker threads, each with its own share of the connections
        /// [default: one per CPU this process may use].
        #[arg(long, value_name = "N", value_parser = parse_workers)]
        workers: Option<std::num::NonZeroUsize>,
    },
    /// Validate a vars file and the endpoints file it names.
    ///
    /// Prints every problem as FILE:LINE:COLUMN: KEY: MESSAGE and exits 1,
    /// or exits 0 when both files are valid.
    Check {
        /// The vars file.
        #[arg(value_name = "FILE", required_unless_present = "config")]
        file: Option<PathBuf>,
        /// The vars file, as `serve` takes it.
        #[arg(long, short = 'c', value_name = "FILE", conflicts_with = "file")]
        config: Option<PathBuf>,
        /// Validate everything except the files that the vars file names
        /// (TLS files, secret files, the endpoints file), and list each of
        /// them as not read. For CI of a GitOps repository, where those
        /// files exist only in the cluster.
        #[arg(long)]
        skip_files: bool,
    },
    /// Write Kubernetes manifests for the gates that a vars file describes.
    ///
    /// Validates the vars file as `check` does, except that the TLS files
    /// are not read, because they need to exist only in the pods. Then
    /// writes one YAML file per group of objects into DIR and a
    /// Kustomization file that lists them, so both `kubectl apply -f DIR`
    /// and kustomize overlays work.
    /// Files of an earlier render that this one does not write are removed.
    /// The endpoints file is not read: in the cluster, the reconcile job
    /// writes it into a ConfigMap.
    Render {
        /// The vars file.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// The folder to write into; created if missing.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The container image of the gateways and the reconcile job.
        #[arg(long, value_name = "IMAGE", default_value = crate::render::DEFAULT_IMAGE)]
        image: String,
        /// The namespace of every object.
        #[arg(long, value_name = "NAMESPACE", default_value = crate::render::DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// Bring the private gate's AWS PrivateLink endpoint service in line with
    /// a vars file, and write the endpoints file.
    ///
    /// Runs the `postern-reconcile` binary, found next to this one or else on
    /// PATH, with all the arguments that follow; `postern reconcile --help`
    /// lists them.
    #[command(disable_help_flag = true)]
    Reconcile {
        /// Arguments for postern-reconcile, such as --config FILE --dry-run.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
    /// Run a demo on loopback: a built-in config, demo upstreams, and
    /// ready-to-paste curl commands for every path through both gates.
    Quickstart {
        /// Base port; the demo uses this port and the next six.
        #[arg(long, default_value_t = 18080, value_name = "PORT")]
        port: u16,
    },
    /// Relay connections to the private gate as the AWS load balancer does:
    /// from a trusted source address, with a PROXY v2 header that names a
    /// VPC endpoint. For trying a config on one machine; not for production.
    Relay(RelayArgs),
    /// Print the decision for a described request, step by step, without
    /// running a server: admission, host, route, credential, access rule
    /// and outcome.
    ///
    /// A bearer JWT from a remote trusted issuer makes the command fetch
    /// that issuer's JWKS once.
    Explain(crate::explain::ExplainArgs),
    /// Machine tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// OAuth clients of postern's token endpoint.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Hash a password for a user who signs in on postern's login page.
    ///
    /// Reads the password from the terminal without echo (twice), or from
    /// standard input when that is not a terminal, such as
    /// `printf %s "$PASSWORD" | postern passwd alice`; one trailing newline
    /// is dropped. Prints the argon2id hash (19 MiB, 2 passes, 1 lane, a
    /// random 16-byte salt) in the identities.users entry for NAME, or alone
    /// without NAME. The password must be 8 to 1024 bytes long.
    Passwd {
        /// The user name, as typed on the login page and sent to apps in
        /// X-Auth-Request-User.
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
}

/// A stand-in for the AWS network load balancer, for trying the private
/// gate's PrivateLink path on one machine.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// Address that clients connect to, such as 127.0.0.1:18085.
    #[arg(long, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// The private gate, such as 127.0.0.1:18081.
    #[arg(long, value_name = "ADDR")]
    pub to: std::net::SocketAddr,
    /// The VPC endpoint id to name in the PROXY v2 header's AWS TLV.
    #[arg(long, value_name = "ID")]
    pub endpoint_id: String,
    /// The balancer's own address, which must be in the private gate's
    /// proxy_protocol.trusted_sources.
    #[arg(long, value_name = "IP", default_value = "127.0.0.2")]
    pub from: std::net::IpAddr,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random machine token and the vars entry that admits it.
    ///
    /// The token is shown once; postern stores only its SHA-256.
    New {
        /// The machine's name, as it reaches apps in X-Auth-Request-User.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Print a new random client secret and the vars entry that admits it.
    ///
    /// The secret is shown once; postern stores only its SHA-256.
    New {
        /// The client id, which becomes the token's subject and reaches
        /// apps in X-Auth-Request-User.
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// The binary that implements `postern reconcile`. It is built from its own
/// crate so that the gateway builds without the AWS SDK.
pub const RECONCILE_BINARY: &str = "postern-reconcile";

/// Runs [`RECONCILE_BINARY`] with `args`, the way git and cargo run their
/// external subcommands: the binary next to the current executable first,
/// then the one on PATH. On Unix the process is replaced, so signals reach
/// the reconcile run directly. Returns only on failure, with its message,
/// or with the exit code where the process cannot be replaced.
pub fn run_reconcile(args: &[std::ffi::OsString]) -> Result<std::process::ExitCode, String> {
    let sibling = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(RECONCILE_BINARY))
        .filter(|path| path.is_file());
    // Command searches PATH itself when given a bare name.
    let program = sibling
        .clone()
        .unwrap_or_else(|| PathBuf::from(RECONCILE_BINARY));
    let mut command = std::process::Command::new(&program);
    command.args(args);
    let not_found = |error: std::io::Error| {
        let beside = std::env::current_exe()
            .map(|exe| exe.with_file_name(RECONCILE_BINARY).display().to_string())
            .unwrap_or_else(|_| format!("(the folder of postern)/{RECONCILE_BINARY}"));
        if error.kind() == std::io::ErrorKind::NotFound {
            format!(
                "postern reconcile needs the {RECONCILE_BINARY} binary, which was found neither at \
                 {beside} nor on PATH; build it with `cargo build --release -p postern-reconcile` \
                 (or `cargo install --path crates/postern-reconcile`) and put it next to postern"
            )
        } else {
            format!("cannot run {}: {error}", program.display())
        }
    };

    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // exec returns only when it failed.
        Err(not_found(command.exec()))
    }
    #[cfg(not(unix))]
    {
        let status = command.status().map_err(not_found)?;
        let code = status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1);
        Ok(std::process::ExitCode::from(code))
    }
}

/// Parses `--workers`, with an error that states the number must be at
/// least 1 instead of the standard library's error for zero.
fn parse_workers(text: &str) -> Result<std::num::NonZeroUsize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| "expected a whole number of worker threads, such as 4".to_owned())?;
    std::num::NonZeroUsize::new(n)
        .ok_or_else(|| "the number of worker threads must be at least 1".to_owned())
}
