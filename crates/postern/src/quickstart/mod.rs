//! `postern quickstart`: the whole gateway on loopback, with demo upstreams,
//! a stand-in for the AWS balancer, and curl commands for every path.
//!
//! Loopback addresses play the networks: 127.0.1.0/24 is the cluster's VPC,
//! 127.0.0.2 is the internal balancer, and 127.0.0.1 is the outside world.

mod demo;
pub mod nlb;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use tokio::net::TcpListener;

use crate::runtime::serve::{self, Bound, GateSelection, StartError};

/// The endpoint the demo's allowed account owns.
const ALLOWED_ENDPOINT: &str = "vpce-0a1b2c3d4e5f60001";
/// An endpoint owned by an account that is not allowed.
const FOREIGN_ENDPOINT: &str = "vpce-0a1b2c3d4e5f60002";
const BALANCER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// A source address inside the demo VPC, for `curl --interface`.
const VPC_CLIENT_IP: &str = "127.0.1.10";

/// The ports the demo uses, from a base port upward.
struct Ports {
    public: u16,
    private: u16,
    admin: u16,
    echo: u16,
    events: u16,
    balancer_allowed: u16,
    balancer_foreign: u16,
}

impl Ports {
    fn from_base(base: u16) -> Result<Self, StartError> {
        if base > u16::MAX - 6 {
            return Err(StartError::Setup(format!(
                "--port {base} leaves no room for the demo's seven ports; pick 1024 to 65000"
            )));
        }
        Ok(Ports {
            public: base,
            private: base + 1,
            admin: base + 2,
            echo: base + 3,
            events: base + 4,
            balancer_allowed: base + 5,
            balancer_foreign: base + 6,
        })
    }
}

/// Writes the demo config, starts the demo upstreams and balancers, and
/// runs the gateway until SIGTERM or SIGINT.
pub async fn run(base_port: u16) -> Result<(), StartError> {
    let ports = Ports::from_base(base_port)?;
    let token = crate::token::generate();
    let folder = std::env::temp_dir().join(format!("postern-quickstart-{}", std::process::id()));
    let vars = write_config(&folder, &ports, &token).map_err(|e| {
        StartError::Setup(format!(
            "cannot write the demo config in {}: {e}",
            folder.display()
        ))
    })?;

    let loopback = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let bind = |port| async move {
        TcpListener::bind(loopback(port))
            .await
            .map_err(|source| StartError::Bind {
                what: "a quickstart demo server",
                key: "--port",
                addr: loopback(port),
                source,
            })
    };
    tokio::spawn(demo::serve(bind(ports.echo).await?, demo::DemoApp::Echo));
    tokio::spawn(demo::serve(
        bind(ports.events).await?,
        demo::DemoApp::Events,
    ));
    for (port, endpoint) in [
        (ports.balancer_allowed, ALLOWED_ENDPOINT),
        (ports.balancer_foreign, FOREIGN_ENDPOINT),
    ] {
        let balancer = nlb::Balancer {
            source_ip: IpAddr::V4(BALANCER_IP),
            target: loopback(ports.private),
            endpoint_id: endpoint.to_owned(),
        };
        tokio::spawn(nlb::serve(bind(port).await?, balancer));
    }

    let result = serve::serve(
        &vars,
        GateSelection::All,
        serve::termination_signal(),
        |bound| {
            println!("{}", guide(bound, &ports, &token, &vars));
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&folder);
    result
}

fn write_config(folder: &Path, ports: &Ports, token: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(folder)?;
    let hash = crate::token::sha256_hex(token);
    let vars = format!(
        "\
# Written by postern quickstart. Loopback addresses stand in for networks:
# 127.0.1.0/24 is the cluster's VPC and 127.0.0.2 the internal balancer.
cluster:
  hostname: example.test
  region: us-east-1
  vpc_cidrs: [127.0.1.0/24]
gateways:
  public:
    listen: 127.0.0.1:{public}
  private:
    listen: 127.0.0.1:{private}
    proxy_protocol:
      trusted_sources: [127.0.0.2/32]
  admin:
    listen: 127.0.0.1:{admin}
privatelink:
  endpoints_file: endpoints.yaml
limits:
  shutdown_delay: 0s     # a demo has no load balancer to wait for
identities:
  machines:
    - name: quickstart-bot
      token_sha256: {hash}
app_config:
  istio:
    private_gateway:
      enabled: true
      allowed_principals:
        - arn:aws:iam::012345678910:root
  echo:
    enabled: true
    upstream: http://127.0.0.1:{echo}
    settings:
      allow_private_gateway: true
  events:
    enabled: true
    upstream: http://127.0.0.1:{events}
    settings:
      allow_private_gateway: true
  dashboard:
    enabled: true
    upstream: http://127.0.0.1:{echo}
",
        public = ports.public,
        private = ports.private,
        admin = ports.admin,
        echo = ports.echo,
        events = ports.events,
    );
    let endpoints = format!(
        "\
endpoints:
  - id: {ALLOWED_ENDPOINT}
    owner: \"012345678910\"
    state: available
  - id: {FOREIGN_ENDPOINT}
    owner: \"999988887777\"
    state: available
"
    );
    let vars_path = folder.join("vars.yaml");
    std::fs::write(&vars_path, vars)?;
    std::fs::write(folder.join("endpoints.yaml"), endpoints)?;
    Ok(vars_path)
}

/// Formats the text printed once the gateway listens.
fn guide(bound: &Bound, ports: &Ports, token: &str, vars: &Path) -> String {
    let public = bound.public.map(|a| a.to_string()).unwrap_or_default();
    let private = bound.private.map(|a| a.to_string()).unwrap_or_default();
    let admin = bound.admin;
    let via_allowed = format!("127.0.0.1:{}", ports.balancer_allowed);
    let via_foreign = format!("127.0.0.1:{}", ports.balancer_foreign);
    format!(
        "\
postern quickstart is running; press Ctrl-C to stop.

  public gate   http://{public}   apps at <app>.example.test
  private gate  http://{private}   apps at <app>.internal.example.test
  admin         http://{admin}   /metrics /healthz /readyz
  config        {vars}
  machine token {token}

Public gate: every request needs a credential.

  # Admitted: the token in Proxy-Authorization; the app's own Authorization passes through.
  curl -sS -H 'Host: echo.example.test' -H 'Proxy-Authorization: Bearer {token}' -H 'Authorization: Bearer app-key' http://{public}/hello
  # Admitted: a slow server-sent event stream, event by event.
  curl -sSN -H 'Host: events.example.test' -H 'Proxy-Authorization: Bearer {token}' http://{public}/
  # Admitted over HTTP/2 (h2c), with the token in Authorization.
  curl -sS --http2-prior-knowledge -H 'Host: echo.example.test' -H 'Authorization: Bearer {token}' http://{public}/h2
  # Rejected with 401: no credential.
  curl -sS -i -H 'Host: echo.example.test' http://{public}/
  # Rejected with 401 invalid_token: a wrong token.
  curl -sS -i -H 'Host: echo.example.test' -H 'Proxy-Authorization: Bearer pst_wrong' http://{public}/
  # Rejected with 404: no app at this host.
  curl -sS -i -H 'Host: nothing.example.test' -H 'Proxy-Authorization: Bearer {token}' http://{public}/

Private gate: no credential; only network identities get in.

  # Admitted: a workload in the cluster's VPC (source address 127.0.1.10).
  curl -sS --interface {VPC_CLIENT_IP} -H 'Host: echo.internal.example.test' http://{private}/vpc
  # Admitted: through PrivateLink, via a stand-in balancer that adds PROXY v2 with endpoint {ALLOWED_ENDPOINT}.
  curl -sS -H 'Host: echo.internal.example.test' http://{via_allowed}/privatelink
  # Closed: endpoint {FOREIGN_ENDPOINT} belongs to an account that is not allowed (curl reports an empty reply).
  curl -sS -H 'Host: echo.internal.example.test' http://{via_foreign}/
  # Closed: a peer outside the VPC.
  curl -sS -H 'Host: echo.internal.example.test' http://{private}/
  # Closed: a PROXY header from a peer that is not a trusted source.
  curl -sS --interface {VPC_CLIENT_IP} --haproxy-protocol -H 'Host: echo.internal.example.test' http://{private}/
  # Rejected with 404: dashboard has not opted in to the private gate.
  curl -sS -i --interface {VPC_CLIENT_IP} -H 'Host: dashboard.internal.example.test' http://{private}/

Admin:

  curl -sS http://{admin}/metrics | grep '^postern_'

Access log lines follow on stdout, one JSON object per request.
",
        vars = vars.display(),
    )
}
