//! A stand-in for the AWS network load balancer in front of the private
//! gate: it accepts on loopback, connects to the gate from the balancer's
//! address, and prepends a PROXY v2 header naming a VPC endpoint.

use std::net::SocketAddr;

use ppp::v2::{Builder, Command, Protocol, Version};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::net::proxy_header::{PP2_SUBTYPE_AWS_VPCE_ID, PP2_TYPE_AWS};
use crate::runtime::serve::StartError;

/// One simulated balancer listener.
#[derive(Debug, Clone)]
pub struct Balancer {
    /// The balancer's own address, which the gate trusts.
    pub source_ip: std::net::IpAddr,
    /// The private gate.
    pub target: SocketAddr,
    /// The VPC endpoint the traffic appears to come through.
    pub endpoint_id: String,
}

/// Builds a PROXY v2 header for a TCP connection from `client` to `server`
/// with the AWS VPC endpoint TLV.
pub fn header(
    client: SocketAddr,
    server: SocketAddr,
    endpoint_id: &str,
) -> std::io::Result<Vec<u8>> {
    let mut tlv = vec![PP2_SUBTYPE_AWS_VPCE_ID];
    tlv.extend_from_slice(endpoint_id.as_bytes());
    let addresses = match (client, server) {
        (SocketAddr::V4(c), SocketAddr::V4(s)) => {
            ppp::v2::Addresses::from(ppp::v2::IPv4::new(*c.ip(), *s.ip(), c.port(), s.port()))
        }
        (c, s) => ppp::v2::Addresses::from(ppp::v2::IPv6::new(
            to_v6(c.ip()),
            to_v6(s.ip()),
            c.port(),
            s.port(),
        )),
    };
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses)
        .write_tlv(PP2_TYPE_AWS, &tlv)?
        .build()
}

fn to_v6(ip: std::net::IpAddr) -> std::net::Ipv6Addr {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        std::net::IpAddr::V6(v6) => v6,
    }
}

/// Relays every accepted connection to the gate until the process ends.
pub async fn serve(listener: TcpListener, balancer: Balancer) {
    loop {
        let Ok((client, client_addr)) = listener.accept().await else {
            continue;
        };
        let balancer = balancer.clone();
        tokio::spawn(async move {
            let outcome = relay(client, client_addr, &balancer).await;
            let closed_unanswered = match &outcome {
                Ok((sent, received)) => *sent > 0 && *received == 0,
                // A gate that closes at once can also make the write of the
                // PROXY header or of the request fail.
                Err(error) => matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::ConnectionAborted
                ),
            };
            if closed_unanswered {
                tracing::warn!(
                    from = %balancer.source_ip,
                    to = %balancer.target,
                    endpoint_id = %balancer.endpoint_id,
                    "The gate closed the connection without a response; check that the \
                     relay's address (--from) is in gateways.private.proxy_protocol.trusted_sources \
                     and that the endpoint is in the endpoints file, available and owned by an \
                     allowed account. The gate's log names the reason"
                );
            } else if let Err(error) = outcome {
                tracing::debug!(%error, "Demo balancer relay ended");
            }
        });
    }
}

/// Relays one connection and returns the bytes sent to the gate and
/// received from it.
async fn relay(
    mut client: TcpStream,
    client_addr: SocketAddr,
    balancer: &Balancer,
) -> std::io::Result<(u64, u64)> {
    let socket = match balancer.source_ip {
        std::net::IpAddr::V4(_) => TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(balancer.source_ip, 0))?;
    let mut upstream = socket.connect(balancer.target).await?;
    upstream
        .write_all(&header(
            client_addr,
            balancer.target,
            &balancer.endpoint_id,
        )?)
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await
}

/// Runs `postern relay`: one balancer stand-in until SIGTERM or SIGINT.
pub async fn relay_command(args: crate::cli::RelayArgs) -> Result<(), StartError> {
    crate::config::endpoints::validate_endpoint_id(&args.endpoint_id)
        .map_err(|e| StartError::Setup(e.to_string()))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| StartError::Bind {
            what: "the relay",
            key: "--listen",
            addr: args.listen,
            source,
        })?;
    tracing::info!(
        listen = %args.listen,
        to = %args.to,
        from = %args.from,
        endpoint_id = %args.endpoint_id,
        "Relay started"
    );
    let balancer = Balancer {
        source_ip: args.from,
        target: args.to,
        endpoint_id: args.endpoint_id,
    };
    tokio::select! {
        _ = serve(listener, balancer) => {}
        _ = crate::runtime::serve::termination_signal() => {}
    }
    Ok(())
}
