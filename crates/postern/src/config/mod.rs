//! The vars file and the endpoints file, as validated plain data.
//!
//! Loading is parse, then decode with every problem collected, then the
//! cross-field checks. The result is immutable: a reload builds a new one.

mod decode;
pub mod endpoints;
pub mod identity;
mod tree;
mod vars;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

pub use decode::Problem;
pub use endpoints::{Endpoint, EndpointState, Endpoints};
pub use identity::IdentityConfig;

use crate::policy::access::AccessRules;
use crate::policy::principal::Principal;

/// The app name whose host postern keeps for its own issuer endpoints.
pub const AUTH_APP_NAME: &str = "auth";
/// Default time a trusted source has to send its whole PROXY header.
pub const DEFAULT_PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// Default cap on open client connections per gate.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default cap on the size of a request's header section.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default time a client has to send a complete request header section
/// (hyper's own default). On HTTP/1.1, hyper starts this timer as soon as a
/// keep-alive connection waits for its next request, so it also closes idle
/// HTTP/1.1 connections.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a client connection with no request in flight stays open.
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default maximum time a client may accept no bytes of what postern has
/// to send it. nginx's `send_timeout` has the same default.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time between SIGTERM (when /readyz turns 503) and closing the
/// listeners, so that load balancers stop sending new connections first.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
/// Default time in-flight requests get to finish after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// Default time to open a TCP connection to an upstream.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time an upstream has to send response headers. Long, because a
/// non-streaming LLM completion sends nothing until it has finished.
pub const DEFAULT_RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(300);
/// Default longest silence inside a response body, such as between two
/// server-sent events.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A validated vars file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The vars file this was read from.
    pub source: PathBuf,
    pub cluster: Cluster,
    pub public: GateConfig,
    /// The private gate, or `None` when `private_gateway.enabled` is false.
    pub private: Option<PrivateGate>,
    pub admin: SocketAddr,
    pub machines: Vec<Machine>,
    /// OAuth clients, trusted JWT issuers and postern's signing keys.
    pub identity: IdentityConfig,
    /// Every app in `app_config`, enabled or not, by name.
    pub apps: BTreeMap<String, App>,
    pub limits: Limits,
    /// Settings that are valid but most likely not what was meant, with
    /// their place in the file. `check` prints them and `serve` logs them.
    pub warnings: Vec<Problem>,
    /// Files that the vars file names but that were not read, because of
    /// [`FileReads::None`], each at the value that names it.
    pub unread_files: Vec<Problem>,
}

/// The set of files, among those a vars file names, that decoding reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileReads {
    /// Every file: the TLS files and the secret files.
    All,
    /// Every file but the TLS files, for tools that run where those are not
    /// mounted, such as render and the reconcile job.
    AllButTls,
    /// No file, for `check --skip-files` in a GitOps repository's CI, where
    /// the files mounted in the cluster do not exist. Each is listed in
    /// [`Config::unread_files`].
    None,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    /// Lowercase DNS name; apps are served at `<app>.<hostname>`.
    pub hostname: String,
    pub region: String,
    pub vpc_cidrs: Vec<IpNet>,
}

/// Listener settings shared by both gates.
#[derive(Debug, Clone)]
pub struct GateConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Peers that must start each connection with a PROXY header.
    pub proxy_sources: Vec<IpNet>,
    pub proxy_header_timeout: Duration,
    /// Peers whose X-Forwarded-* and X-Request-Id headers are kept.
    pub forwarded_sources: Vec<IpNet>,
}

#[derive(Debug, Clone)]
pub struct PrivateGate {
    pub gate: GateConfig,
    pub allowed_principals: Vec<Principal>,
    /// Regions besides `cluster.region` whose VPC endpoints may connect, as
    /// the endpoint service's supported regions.
    pub supported_regions: Vec<String>,
    pub endpoints_file: Option<EndpointsFile>,
}

/// `privatelink.endpoints_file`, resolved against the vars file's folder,
/// and where the vars file names it (for errors about the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointsFile {
    pub path: PathBuf,
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A machine identity provisioned in postern, proven by a static token.
#[derive(Debug, Clone)]
pub struct Machine {
    pub name: String,
    pub token_sha256: [u8; 32],
}

#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub enabled: bool,
    /// `None` only for a disabled app.
    pub upstream: Option<Upstream>,
    pub allow_private_gateway: bool,
    /// Who may reach the app on the public gate.
    pub access: AccessRules,
    pub timeouts: AppTimeouts,
}

/// An upstream origin, `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port`, as sent in the upstream request's URI.
    pub authority: http::uri::Authority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppTimeouts {
    pub connect: Duration,
    pub response_headers: Duration,
    pub body_idle: Duration,
    /// Cap on the whole exchange; `None` (the default) lets streams run.
    pub total: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub client_idle_timeout: Duration,
    /// Maximum time a client connection may accept no bytes while postern
    /// has bytes to send it.
    pub send_timeout: Duration,
    pub shutdown_delay: Duration,
    pub shutdown_grace_period: Duration,
}

/// Everything wrong with a config, in file order.
#[derive(Debug, Clone)]
pub struct Problems(pub Vec<Problem>);

// === impl Config ===

impl Config {
    /// Reads and validates a vars file.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let text = read_text(path)?;
        Config::from_text(path, &text)
    }

    /// Validates vars text as if it were read from `path`.
    pub fn from_text(path: &Path, text: &str) -> Result<Config, Problems> {
        vars::decode(path, text, FileReads::All)
    }

    /// Reads and validates a vars file like [`Config::load`], but leaves the
    /// TLS files it names unread, for tools that do not serve traffic and
    /// run where those files are not mounted, such as the reconcile job.
    pub fn load_without_tls_files(path: &Path) -> Result<Config, Problems> {
        let text = read_text(path)?;
        Config::from_text_without_tls_files(path, &text)
    }

    /// Validates vars text like [`Config::from_text`], but leaves the TLS
    /// files unread, as [`Config::load_without_tls_files`] does.
    pub fn from_text_without_tls_files(path: &Path, text: &str) -> Result<Config, Problems> {
        vars::decode(path, text, FileReads::AllButTls)
    }

    /// Reads and validates a vars file, but reads none of the files it
    /// names, as `check --skip-files` does. [`Config::unread_files`] lists
    /// them.
    pub fn load_without_files(path: &Path) -> Result<Config, Problems> {
        let text = read_text(path)?;
        vars::decode(path, &text, FileReads::None)
    }

    /// Enabled apps only.
    pub fn enabled_apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values().filter(|a| a.enabled)
    }
}

fn read_text(path: &Path) -> Result<String, Problems> {
    std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            file: path.to_owned(),
            line: 0,
            column: 0,
            path: String::new(),
            message: match e.kind() {
                std::io::ErrorKind::InvalidData => {
                    "the file is not UTF-8 text; save it as UTF-8".to_owned()
                }
                _ => format!("cannot read the file: {e}; check the path"),
            },
        }])
    })
}

/// Finds the endpoints file that a vars file names, even when the vars file
/// has other problems, so `postern check` can report the problems of both.
pub fn named_endpoints_file(vars: &Path) -> Option<EndpointsFile> {
    let text = std::fs::read_to_string(vars).ok()?;
    let root = tree::parse(&text).ok()?;
    let node = root.get("privatelink")?.get("endpoints_file")?;
    Some(EndpointsFile {
        path: vars.parent().unwrap_or(Path::new(".")).join(node.as_str()?),
        line: node.line,
        column: node.column,
    })
}

// === impl EndpointsFile ===

impl EndpointsFile {
    /// Loads the endpoints file. A file that cannot be read is reported in
    /// `vars`, at the value that names it, as every other problem is.
    pub fn load(&self, vars: &Path) -> Result<Endpoints, Problems> {
        Endpoints::load(&self.path).map_err(|mut problems| {
            for problem in &mut problems.0 {
                if problem.line == 0 {
                    problem.file = vars.to_owned();
                    problem.line = self.line;
                    problem.column = self.column;
                    problem.path = "privatelink.endpoints_file".into();
                }
            }
            problems
        })
    }
}

// === impl AppTimeouts ===

impl Default for AppTimeouts {
    fn default() -> Self {
        AppTimeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            response_headers: DEFAULT_RESPONSE_HEADER_TIMEOUT,
            body_idle: DEFAULT_BODY_IDLE_TIMEOUT,
            total: None,
        }
    }
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            client_idle_timeout: DEFAULT_CLIENT_IDLE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            shutdown_delay: DEFAULT_SHUTDOWN_DELAY,
            shutdown_grace_period: DEFAULT_SHUTDOWN_GRACE_PERIOD,
        }
    }
}

// === impl Problems ===

impl Problems {
    /// Counts the problems in words, such as `1 problem` or `3 problems`.
    pub fn count_text(&self) -> String {
        match self.0.len() {
            1 => "1 problem".to_owned(),
            n => format!("{n} problems"),
        }
    }
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for problem in &self.0 {
            writeln!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}
