//! Scalar parsers for the vars file. Each error names the value and the
//! expected form.

use std::net::SocketAddr;

use ipnet::IpNet;

use super::Upstream;

pub(super) fn parse_hostname(text: &str) -> Result<String, String> {
    let host = text.trim_end_matches('.').to_ascii_lowercase();
    let labels_ok = host.split('.').all(|l| parse_app_name(l).is_ok());
    if host.is_empty() || host.len() > 253 || !labels_ok || !host.contains('.') {
        // A URL pasted here gets its host as the fix, when that is valid.
        let bare = text
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or(rest));
        if let Some(bare) = bare.filter(|b| *b != text && parse_hostname(b).is_ok()) {
            return Err(format!(
                "invalid hostname {:?}: write the host name alone, {bare}, without a scheme, \
                 port or path",
                crate::redact::url_userinfo(text)
            ));
        }
        return Err(format!(
            "invalid hostname {text:?}; expected a DNS name such as ml.example.com"
        ));
    }
    Ok(host)
}

/// Checks an AWS region name: a two-letter area, `gov-` in the GovCloud
/// partition, a compass direction or `central`, and a number, such as
/// `us-east-1`, `us-gov-west-1` or `ap-southeast-2`. No crate lists the
/// regions offline and new ones keep coming, so the form is checked by hand
/// instead of a list. Only the partitions that `allowed_principals` takes
/// (aws, aws-cn and aws-us-gov) are covered.
pub(super) fn parse_region(text: &str) -> Result<String, String> {
    const DIRECTIONS: [&str; 9] = [
        "east",
        "west",
        "north",
        "south",
        "central",
        "northeast",
        "northwest",
        "southeast",
        "southwest",
    ];
    let parts: Vec<&str> = text.split('-').collect();
    let (area, direction, number) = match parts.as_slice() {
        [area, direction, number] => (*area, *direction, *number),
        // GovCloud regions exist only in the US.
        ["us", "gov", direction, number] => ("us", *direction, *number),
        _ => ("", "", ""),
    };
    let ok = area.len() == 2
        && area.bytes().all(|b| b.is_ascii_lowercase())
        && DIRECTIONS.contains(&direction)
        && (1..=2).contains(&number.len())
        && !number.starts_with('0')
        && number.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid region {text:?}; expected an AWS region name such as us-east-1, \
             eu-west-1 or us-gov-west-1"
        ))
    }
}

/// Checks an app name, which becomes a DNS label in the app's host name.
pub(super) fn parse_app_name(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && !text.starts_with('-')
        && !text.ends_with('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        return Ok(());
    }
    let lowercase = text.to_ascii_lowercase();
    if lowercase != text && parse_app_name(&lowercase).is_ok() {
        return Err(format!(
            "invalid name {text:?}: a DNS label is lowercase; write {lowercase}"
        ));
    }
    Err(format!(
        "invalid name {text:?}; expected a DNS label: lowercase letters, digits and '-', at \
         most 63 characters"
    ))
}

pub(super) fn parse_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid name {text:?}; expected letters, digits, '-', '_', '.' or '@'"
        ))
    }
}

/// Reads a CIDR block. A block with host bits set, such as `10.0.3.1/24`,
/// is rejected instead of being widened to its network, because it most
/// likely means one address and would silently admit the whole network.
pub(super) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let net = text.parse::<IpNet>().map_err(|_| {
        format!(
            "invalid CIDR block {text:?}; expected a network such as 10.0.0.0/16 or 10.0.0.5/32"
        )
    })?;
    let network = net.trunc();
    if network != net {
        let host = IpNet::from(net.addr());
        return Err(format!(
            "invalid CIDR block {text:?}: the address has host bits set for a /{}; write \
             {network} for the whole network or {host} for the one address",
            net.prefix_len()
        ));
    }
    Ok(net)
}

/// Reads a listen address. The port is checked apart from the address, so
/// that a port above 65535 gets its own message.
pub(super) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let expected = "expected IP:PORT such as 0.0.0.0:8443";
    let Some((ip, port)) = text.rsplit_once(':') else {
        return Err(format!("invalid listen address {text:?}; {expected}"));
    };
    let ip_ok = ip.parse::<std::net::Ipv4Addr>().is_ok()
        || ip
            .strip_prefix('[')
            .and_then(|ip| ip.strip_suffix(']'))
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    let port_is_number = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    if ip_ok && port_is_number {
        return Err(format!(
            "invalid listen address {text:?}: the port {port} is out of range; expected a \
             port from 0 to 65535"
        ));
    }
    if ip.is_empty() && port_is_number {
        return Err(format!(
            "invalid listen address {text:?}: the IP address is missing; {expected}, or \
             0.0.0.0:{port} for every address"
        ));
    }
    if ip.eq_ignore_ascii_case("localhost") && port_is_number {
        return Err(format!(
            "invalid listen address {text:?}: a listen address is an IP address, not a host \
             name; write 127.0.0.1:{port}"
        ));
    }
    Err(format!("invalid listen address {text:?}; {expected}"))
}

pub(super) fn parse_sha256_hex(text: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    match hex::decode_to_slice(text, &mut out) {
        Ok(()) if text.len() == 64 => Ok(out),
        // The value is not shown: a token pasted here by mistake is a secret.
        _ => Err(format!(
            "invalid token_sha256 ({} characters); expected the 64 hex digits of the token's \
             SHA-256, not the token itself (postern token new NAME prints both)",
            text.chars().count()
        )),
    }
}

pub(super) fn parse_upstream(text: &str) -> Result<Upstream, String> {
    let shown = crate::redact::url_userinfo(text);
    let invalid = |why: &str| {
        format!(
            "invalid upstream {shown:?}: {why}; expected http://HOST:PORT such as http://litellm.litellm.svc:4000"
        )
    };
    let uri: http::Uri = text.parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        None if uri.authority().is_some() => {
            return Err(format!(
                "invalid upstream {shown:?}: the scheme is missing; write http://{shown}"
            ));
        }
        None => return Err(invalid("the scheme and host are missing")),
        Some(scheme) => {
            return Err(invalid(&format!(
                "the scheme is {scheme}, but only http upstreams are supported"
            )));
        }
    }
    let authority = uri.authority().ok_or_else(|| invalid("missing host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("credentials in the URL are not allowed"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("a path or query is not allowed"));
    }
    let port = authority.port_u16().unwrap_or(80);
    let authority = format!("{}:{port}", authority.host())
        .parse()
        .map_err(|_| invalid("invalid host"))?;
    Ok(Upstream { authority })
}
