//! Reading a PROXY protocol header (v1 or v2) off a fresh connection.
//!
//! The ppp crate parses both versions, reports "need more bytes" separately
//! from errors, and leaves TLV types to the caller, which is what the AWS
//! endpoint TLV needs. This module adds what ppp leaves out: reading from a
//! socket with a deadline and a size cap, decoding the AWS TLV's subtype,
//! rejecting every overrunning TLV, and spotting a second header.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::policy::admission::{ProxyHeader, Refusal};

/// The AWS TLV type (PP2_TYPE_AWS) that carries the VPC endpoint id.
pub const PP2_TYPE_AWS: u8 = 0xEA;
/// The AWS subtype (PP2_SUBTYPE_AWS_VPCE_ID) in the first byte of its value.
pub const PP2_SUBTYPE_AWS_VPCE_ID: u8 = 0x01;
/// The v2 signature.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 prefix, including its space.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Cap on a whole v2 header. Balancers send a few dozen bytes of TLVs; the
/// protocol allows 64 KiB, which no legitimate peer needs.
pub const MAX_HEADER_BYTES: usize = 4096;
/// Maximum length of a v1 line, CRLF included (the protocol's own limit).
const V1_MAX_BYTES: usize = 107;

/// Failures to read a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderFault {
    #[error("the peer closed the connection before sending a PROXY header")]
    Missing,
    #[error("the connection sent something other than a PROXY header")]
    NotProxy,
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    #[error("the connection closed in the middle of the PROXY header")]
    Truncated,
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("a second PROXY header followed the first")]
    Repeated,
    #[error("reading the PROXY header failed: {0}")]
    Io(String),
    /// A valid header, then nothing before the client went away or the
    /// request timeout passed: no refusal, just an idle connection.
    #[error("the client sent no request after the PROXY header")]
    NoRequest,
}

/// Outcome of parsing the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The buffer is a prefix of a header: read more.
    Incomplete,
    /// A whole header, and how many bytes it took.
    Header(ProxyHeader, usize),
}

/// Classification of a stream's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// They start with a PROXY v1 or v2 signature.
    ProxySignature,
    /// They cannot start a PROXY header.
    Other,
    /// The peer closed without sending anything.
    Closed,
}

// === impl HeaderFault ===

impl HeaderFault {
    /// Returns the refusal this fault means, or `None` for a client that simply
    /// sent nothing after a valid header.
    pub fn refusal(&self) -> Option<Refusal> {
        let refusal = match self {
            HeaderFault::NoRequest => return None,
            HeaderFault::Missing | HeaderFault::NotProxy => Refusal::ProxyHeaderMissing,
            HeaderFault::Malformed(_) | HeaderFault::Io(_) => Refusal::ProxyHeaderMalformed,
            HeaderFault::Truncated => Refusal::ProxyHeaderTruncated,
            HeaderFault::Timeout(_) => Refusal::ProxyHeaderTimeout,
            HeaderFault::Repeated => Refusal::ProxyHeaderRepeated,
        };
        Some(refusal)
    }
}

/// Parses a PROXY header at the start of `input`.
///
/// Pure, so it can be fuzzed and tested on every split of the input.
pub fn parse(input: &[u8]) -> Result<Parsed, HeaderFault> {
    if input.is_empty() {
        return Ok(Parsed::Incomplete);
    }
    if !could_be_proxy(input) {
        return Err(HeaderFault::NotProxy);
    }
    if input.starts_with(V2_SIGNATURE) {
        // Check the declared length before ppp waits for that many bytes.
        if input.len() >= 16 {
            let declared = 16 + u16::from_be_bytes([input[14], input[15]]) as usize;
            if declared > MAX_HEADER_BYTES {
                return Err(HeaderFault::Malformed(format!(
                    "declares {declared} bytes, more than the {MAX_HEADER_BYTES}-byte cap"
                )));
            }
        }
    }

    // ppp reports some prefixes of a v1 line as invalid (a port cut in two
    // looks like a bad port), so a v1 header is parsed only once its line
    // ending has arrived.
    let v1_line_end = input.windows(2).position(|w| w == b"\r\n");
    let is_v1 = !input.starts_with(&V2_SIGNATURE[..input.len().min(12)]);
    if is_v1 && v1_line_end.is_none() {
        return if input.len() < V1_MAX_BYTES {
            Ok(Parsed::Incomplete)
        } else {
            Err(HeaderFault::Malformed("v1 header line too long".into()))
        };
    }

    if let (true, Some(end)) = (is_v1, v1_line_end) {
        return parse_v1_line(&input[..end + 2]);
    }

    let result = HeaderResult::parse(input);
    if result.is_incomplete() {
        return Ok(Parsed::Incomplete);
    }
    match result {
        HeaderResult::V2(Ok(header)) => from_v2(&header).map(|h| Parsed::Header(h, header.len())),
        HeaderResult::V1(Ok(header)) => Ok(Parsed::Header(from_v1(&header), header.header.len())),
        HeaderResult::V2(Err(e)) => Err(HeaderFault::Malformed(e.to_string())),
        HeaderResult::V1(Err(e)) => Err(HeaderFault::Malformed(e.to_string())),
    }
}

/// Parses one whole v1 line, CRLF included. ppp ends a line at the first CR
/// whatever follows it, so a header that does not take the whole line (a
/// bare CR inside it) is malformed.
fn parse_v1_line(line: &[u8]) -> Result<Parsed, HeaderFault> {
    match v1::Header::try_from(line) {
        Ok(header) if header.header.len() == line.len() => {
            Ok(Parsed::Header(from_v1(&header), line.len()))
        }
        Ok(_) => Err(HeaderFault::Malformed(
            "a bare CR inside the v1 header line".into(),
        )),
        // The whole line is here, so nothing more can complete it.
        Err(e) => Err(HeaderFault::Malformed(e.to_string())),
    }
}

fn from_v1(header: &v1::Header<'_>) -> ProxyHeader {
    let source = match header.addresses {
        v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        v1::Addresses::Unknown => None,
    };
    ProxyHeader::Proxy {
        source,
        endpoint_id: None,
    }
}

fn from_v2(header: &v2::Header<'_>) -> Result<ProxyHeader, HeaderFault> {
    // Walk every TLV, even for LOCAL, so that an overrunning length is
    // always an error. Unknown types are skipped.
    // ppp counts the whole payload of an AF_UNSPEC header as address bytes,
    // but the protocol puts TLVs right after the 16-byte header there (an
    // empty address block), so the TLVs are located here.
    let address_len = header.address_family().byte_length().unwrap_or(0);
    let tlv_start = (16 + address_len).min(header.len());
    let tlvs = v2::TypeLengthValues::from(&header.as_bytes()[tlv_start..]);

    let mut endpoint_id = None;
    for tlv in tlvs {
        let tlv = tlv.map_err(|e| HeaderFault::Malformed(format!("invalid TLV: {e}")))?;
        if tlv.kind != PP2_TYPE_AWS {
            continue;
        }
        let Some((&subtype, value)) = tlv.value.split_first() else {
            return Err(HeaderFault::Malformed("empty AWS TLV".into()));
        };
        if subtype != PP2_SUBTYPE_AWS_VPCE_ID {
            continue;
        }
        if endpoint_id.is_some() {
            return Err(HeaderFault::Malformed(
                "more than one VPC endpoint id TLV".into(),
            ));
        }
        // Kept as sent (lossy for non-UTF-8) so the admission policy can
        // reject it by its characters.
        endpoint_id = Some(String::from_utf8_lossy(value).into_owned());
    }

    match header.command {
        v2::Command::Local => Ok(ProxyHeader::Local),
        v2::Command::Proxy => {
            let source = match header.addresses {
                v2::Addresses::IPv4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                v2::Addresses::IPv6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                v2::Addresses::Unix(_) | v2::Addresses::Unspecified => None,
            };
            Ok(ProxyHeader::Proxy {
                source,
                endpoint_id,
            })
        }
    }
}

/// Checks whether `bytes` could be the start of a v1 or v2 header.
pub fn could_be_proxy(bytes: &[u8]) -> bool {
    let prefix_of = |signature: &[u8]| {
        let n = bytes.len().min(signature.len());
        bytes[..n] == signature[..n]
    };
    prefix_of(V2_SIGNATURE) || prefix_of(V1_PREFIX)
}

/// Reads a PROXY header into `buf` within `header_timeout`, then checks,
/// within `request_timeout`, that the next bytes are not a second header.
/// On success `buf` holds only the bytes after the header, which belong to
/// the next protocol.
pub async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    header_timeout: Duration,
    request_timeout: Duration,
) -> Result<ProxyHeader, HeaderFault> {
    let header = tokio::time::timeout(header_timeout, read_header(stream, buf))
        .await
        .unwrap_or(Err(HeaderFault::Timeout(header_timeout)))?;

    // The client's first bytes may come later than the balancer's header,
    // as slowly as any client's request head may.
    let next = tokio::time::timeout(request_timeout, sniff(stream, buf)).await;
    match next {
        Ok(Ok(Sniffed::ProxySignature)) => Err(HeaderFault::Repeated),
        Ok(Ok(Sniffed::Other)) => Ok(header),
        Ok(Ok(Sniffed::Closed)) | Err(_) => Err(HeaderFault::NoRequest),
        Ok(Err(fault)) => Err(fault),
    }
}

async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<ProxyHeader, HeaderFault> {
    loop {
        match parse(buf)? {
            Parsed::Header(header, len) => {
                let _ = buf.split_to(len);
                return Ok(header);
            }
            Parsed::Incomplete if buf.len() >= MAX_HEADER_BYTES => {
                return Err(HeaderFault::Malformed("header too long".into()));
            }
            Parsed::Incomplete => {}
        }

        let was_empty = buf.is_empty();
        buf.reserve(512);
        let n = stream.read_buf(buf).await.map_err(io_fault)?;
        if n == 0 {
            return Err(if was_empty {
                HeaderFault::Missing
            } else {
                HeaderFault::Truncated
            });
        }
    }
}

/// Reads until `buf` shows whether it starts with a PROXY signature. Bytes
/// read stay in `buf`.
pub async fn sniff<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Sniffed, HeaderFault> {
    loop {
        if !buf.is_empty() {
            if !could_be_proxy(buf) {
                return Ok(Sniffed::Other);
            }
            if buf.starts_with(V2_SIGNATURE) || buf.starts_with(V1_PREFIX) {
                return Ok(Sniffed::ProxySignature);
            }
        }
        buf.reserve(4096);
        let n = stream.read_buf(buf).await.map_err(io_fault)?;
        if n == 0 {
            // A partial signature at EOF is not HTTP either; the next
            // protocol will fail on it.
            return Ok(if buf.is_empty() {
                Sniffed::Closed
            } else {
                Sniffed::Other
            });
        }
    }
}

fn io_fault(e: io::Error) -> HeaderFault {
    HeaderFault::Io(e.kind().to_string())
}

#[cfg(test)]
mod tests;
