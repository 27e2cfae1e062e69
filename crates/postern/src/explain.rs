//! `postern explain`: the decision for a described request, step by step,
//! without running a server. Admission uses the listener's own rules and
//! every later step is [`crate::proxy::decision::evaluate`], the function
//! the server runs, so the two cannot disagree.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request};

use crate::auth::{Identity, IdentityKind};
use crate::policy::admission::{
    Admission, EndpointIdentity, Gate, PeerVerdict, ProxyHeader, Refusal,
};
use crate::proxy::decision::{self, Next, Trace};
use crate::runtime::state::Snapshot;

/// Port given to addresses written without one; no decision depends on it.
const DEFAULT_PORT: u16 = 40000;

/// A request to explain, as the command line describes it.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The vars file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// The gate the request arrives on.
    #[arg(long, value_enum)]
    pub gate: ExplainGate,
    /// The Host header, such as grafana.example.com.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// The request target.
    #[arg(long, default_value = "/", value_name = "PATH")]
    pub path: String,
    #[arg(long, short = 'X', default_value = "GET", value_name = "METHOD")]
    pub method: String,
    /// A request header, as `Name: value`; repeat for more, such as
    /// `-H 'Proxy-Authorization: Bearer pst_...'`.
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    pub headers: Vec<String>,
    /// An identity to take as proven in place of a credential: its name.
    #[arg(long, value_name = "NAME")]
    pub identity: Option<String>,
    /// The described identity's email.
    #[arg(long, value_name = "EMAIL", requires = "identity")]
    pub email: Option<String>,
    /// A group of the described identity; repeat for more.
    #[arg(long = "group", value_name = "GROUP", requires = "identity")]
    pub groups: Vec<String>,
    /// Describes a machine instead of a person.
    #[arg(long, requires = "identity")]
    pub machine: bool,
    /// The proof method of the described identity, such as `machine_token`,
    /// `jwt:postern` or `jwt:<issuer name>` [default: `machine_token` for a
    /// machine, `described` for a person].
    #[arg(long, value_name = "METHOD", requires = "identity")]
    pub auth_method: Option<String>,
    /// The TCP peer: IP or IP:PORT.
    #[arg(long, default_value = "192.0.2.10", value_name = "ADDR")]
    pub peer: String,
    /// The source address in the PROXY header the peer sends: IP or
    /// IP:PORT. Needed when the peer is a trusted PROXY source.
    #[arg(long, value_name = "ADDR")]
    pub proxy_source: Option<String>,
    /// The VPC endpoint id in the PROXY header's AWS TLV.
    #[arg(long, value_name = "ID")]
    pub endpoint_id: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExplainGate {
    Public,
    Private,
}

/// Prints each step as `step: detail`.
struct Printer;

impl Trace for Printer {
    fn step(&mut self, step: &'static str, detail: fmt::Arguments<'_>) {
        println!("{step}: {detail}");
    }
}

/// Runs the command: 0 after an explanation, 1 for a config with problems,
/// 2 for a request that cannot be described.
pub fn run(args: ExplainArgs) -> ExitCode {
    let (config, endpoints) = match crate::runtime::serve::load(&args.config) {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprint!("{problems}");
            return ExitCode::FAILURE;
        }
    };

    let gate = match args.gate {
        ExplainGate::Public => Gate::Public,
        ExplainGate::Private => Gate::Private,
    };

    let described = match request_parts(&args) {
        Ok(parts) => parts,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };

    // Built outside the runtime, so remote issuers start no background
    // JWKS refresh: a bearer JWT makes the credential step fetch their
    // JWKS once, as the server does for a key id it has not seen.
    let snapshot = match Snapshot::new(config) {
        Ok(snapshot) => snapshot,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };

    let (mut parts, identity) = described;
    runtime.block_on(explain(
        &snapshot, &endpoints, gate, &args, &mut parts, identity,
    ));
    ExitCode::SUCCESS
}

async fn explain(
    snapshot: &Snapshot,
    endpoints: &crate::config::Endpoints,
    gate: Gate,
    args: &ExplainArgs,
    parts: &mut Parts,
    identity: Option<Identity>,
) {
    let admitted = match admission(snapshot, endpoints, gate, args) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            println!("admission: refused: {}", refusal.as_str());
            println!("outcome: closed {}", refusal.as_str());
            return;
        }
    };
    let (admission, endpoint) = admitted;
    match &endpoint {
        Some(endpoint) => println!(
            "admission: {} from {} through endpoint {} of account {}",
            admission.kind.as_str(),
            admission.client,
            endpoint.id,
            endpoint.owner
        ),
        None => println!(
            "admission: {} from {}",
            admission.kind.as_str(),
            admission.client
        ),
    }

    // Without a running gateway there is no connection to learn the scheme
    // from, so it follows the public gate's TLS setting.
    let scheme = match snapshot.config.public.tls {
        Some(_) => "https",
        None => "http",
    };
    // Read-only: explaining a request must not refresh or end the
    // session its cookie carries, at the provider or in the store.
    let (facts, result) = decision::evaluate(
        snapshot,
        gate,
        scheme,
        parts,
        identity,
        crate::signin::credential::Mode::ReadOnly,
        &mut Printer,
    )
    .await;
    match result {
        Ok(Next::Forward(route)) => {
            println!(
                "outcome: allow authorized (forwarded to {} at {})",
                route.app, route.upstream
            );
            print_upstream_identity(snapshot, gate, &facts, &admission, endpoint.as_ref());
        }
        Ok(Next::AuthHost) => {
            println!("outcome: auth host (served by postern's sign-in and issuer endpoints)")
        }
        Err(denial) => match denial.sign_in_location() {
            Some(location) => println!(
                "outcome: redirect {} {} (to sign in at {location})",
                denial.status.as_u16(),
                denial.reason
            ),
            None => println!("outcome: deny {} {}", denial.status.as_u16(), denial.reason),
        },
    }
}

/// Decides admission with the listener's rules.
fn admission(
    snapshot: &Snapshot,
    endpoints: &crate::config::Endpoints,
    gate: Gate,
    args: &ExplainArgs,
) -> Result<(Admission, Option<EndpointIdentity>), Refusal> {
    let rules = snapshot.rules(gate).ok_or(Refusal::GateDisabled)?;
    // The values were checked in `request_parts`.
    let peer = socket_addr(&args.peer).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let sends_header = args.proxy_source.is_some() || args.endpoint_id.is_some();
    match rules.classify_peer(peer) {
        PeerVerdict::Refuse(refusal) => Err(refusal),
        PeerVerdict::Admit(_) if sends_header => Err(Refusal::ProxyHeaderUntrusted),
        PeerVerdict::Admit(admission) => Ok((admission, None)),
        PeerVerdict::ExpectProxyHeader if !sends_header => Err(Refusal::ProxyHeaderMissing),
        PeerVerdict::ExpectProxyHeader => {
            let header = ProxyHeader::Proxy {
                source: args
                    .proxy_source
                    .as_deref()
                    .and_then(|s| socket_addr(s).ok()),
                endpoint_id: args.endpoint_id.clone(),
            };
            rules.admit_header(peer, &header, endpoints)
        }
    }
}

/// Prints what the app would learn about the caller.
fn print_upstream_identity(
    snapshot: &Snapshot,
    gate: Gate,
    facts: &decision::Facts,
    admission: &Admission,
    endpoint: Option<&EndpointIdentity>,
) {
    if let Some(identity) = &facts.identity {
        let groups = crate::http::headers::groups_value(&identity.groups);
        let email = identity
            .email
            .as_deref()
            .map(crate::http::headers::identity_value);
        println!(
            "identity headers: X-Auth-Request-User: {}, X-Auth-Request-Email: {}, \
             X-Auth-Request-Groups: {}",
            identity.name,
            email.as_deref().unwrap_or("(none)"),
            groups
                .as_ref()
                .and_then(|g| g.to_str().ok())
                .unwrap_or("(none)"),
        );
    }
    let caller =
        crate::identity::assertion::Caller::new(gate, facts.identity.as_ref(), admission, endpoint);
    match (&snapshot.identities.local, caller, &facts.route) {
        (Some(_), Some(_), Some(route)) => {
            println!(
                "assertion: X-Postern-Assertion signed by postern, aud {}",
                route.audience
            )
        }
        (None, _, _) => println!("assertion: none (identities.signing is not set)"),
        _ => println!("assertion: none"),
    }
}

/// Builds the request head and the described identity from the arguments.
fn request_parts(args: &ExplainArgs) -> Result<(Parts, Option<Identity>), String> {
    socket_addr(&args.peer)?;
    if let Some(source) = &args.proxy_source {
        socket_addr(source)?;
    }
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| format!("invalid method {:?}", args.method))?;
    let mut builder = Request::builder().method(method).uri(args.path.as_str());
    if let Some(host) = &args.host {
        builder = builder.header(http::header::HOST, host.as_str());
    }
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("invalid header {header:?}; expected 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("invalid header name in {header:?}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("invalid header value in {header:?}"))?;
        builder = builder.header(name, value);
    }
    let (parts, ()) = builder
        .body(())
        .map_err(|e| format!("invalid request: {e}; check --path and --host"))?
        .into_parts();

    let identity = args.identity.as_ref().map(|name| {
        let kind = if args.machine {
            IdentityKind::Machine
        } else {
            IdentityKind::Person
        };
        let default_method = if args.machine {
            "machine_token"
        } else {
            "described"
        };
        Identity {
            name: Arc::from(name.as_str()),
            method: Arc::from(args.auth_method.as_deref().unwrap_or(default_method)),
            kind,
            email: args.email.as_deref().map(Arc::from),
            groups: args.groups.iter().map(|g| Arc::from(g.as_str())).collect(),
        }
    });
    Ok((parts, identity))
}

/// Parses `IP` or `IP:PORT`.
fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .map_err(|_| format!("invalid address {text:?}; expected IP or IP:PORT"))
}
