use std::time::Duration;

use bytes::BytesMut;
use ppp::v2::{Builder, Command, Protocol, Version};
use tokio_test::io::Builder as MockIo;

use super::*;

const ENDPOINT: &str = "vpce-0a1b2c3d4e5f60001";

fn v2_header(command: Command, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let addresses = ppp::v2::IPv4::new([10, 1, 2, 3], [10, 0, 0, 1], 51000, 443);
    let mut builder = Builder::with_addresses(Version::Two | command, Protocol::Stream, addresses);
    for (kind, value) in tlvs {
        builder = builder.write_tlv(*kind, value).unwrap();
    }
    builder.build().unwrap()
}

fn aws_tlv(id: &str) -> Vec<u8> {
    let mut value = vec![PP2_SUBTYPE_AWS_VPCE_ID];
    value.extend_from_slice(id.as_bytes());
    value
}

fn endpoint_header() -> Vec<u8> {
    let tlv = aws_tlv(ENDPOINT);
    // An unknown TLV before the AWS one, and another after: order is free.
    v2_header(
        Command::Proxy,
        &[(0x05, b"unique"), (PP2_TYPE_AWS, &tlv), (0xE0, b"x")],
    )
}

fn expected_endpoint_header() -> ProxyHeader {
    ProxyHeader::Proxy {
        source: Some("10.1.2.3:51000".parse().unwrap()),
        endpoint_id: Some(ENDPOINT.into()),
    }
}

async fn read_chunks(chunks: &[&[u8]]) -> (Result<ProxyHeader, HeaderFault>, BytesMut) {
    let mut mock = MockIo::new();
    for chunk in chunks {
        mock.read(chunk);
    }
    let mut stream = mock.build();
    let mut buf = BytesMut::new();
    let result = read(
        &mut stream,
        &mut buf,
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .await;
    (result, buf)
}

#[test]
fn parse_v2_with_endpoint_tlv() {
    let header = endpoint_header();
    let Parsed::Header(parsed, len) = parse(&header).unwrap() else {
        panic!("expected a whole header")
    };
    assert_eq!(parsed, expected_endpoint_header());
    assert_eq!(len, header.len());
}

#[test]
fn parse_every_prefix_is_incomplete() {
    let header = endpoint_header();
    for end in 0..header.len() {
        assert_eq!(
            parse(&header[..end]),
            Ok(Parsed::Incomplete),
            "prefix {end}"
        );
    }
    let v1 = b"PROXY TCP4 10.1.2.3 10.0.0.1 51000 443\r\n";
    for end in 0..v1.len() {
        assert_eq!(parse(&v1[..end]), Ok(Parsed::Incomplete), "v1 prefix {end}");
    }
}

#[test]
fn parse_v1_header() {
    let Parsed::Header(parsed, len) =
        parse(b"PROXY TCP4 10.1.2.3 10.0.0.1 51000 443\r\nGET").unwrap()
    else {
        panic!("expected a whole header")
    };
    assert_eq!(len, 40);
    assert_eq!(
        parsed,
        ProxyHeader::Proxy {
            source: Some("10.1.2.3:51000".parse().unwrap()),
            endpoint_id: None
        }
    );
    let Parsed::Header(unknown, _) = parse(b"PROXY UNKNOWN\r\n").unwrap() else {
        panic!("expected a whole header")
    };
    assert_eq!(
        unknown,
        ProxyHeader::Proxy {
            source: None,
            endpoint_id: None
        }
    );
}

#[test]
fn parse_local_command() {
    let header = v2_header(Command::Local, &[]);
    let Parsed::Header(parsed, _) = parse(&header).unwrap() else {
        panic!("expected a whole header")
    };
    assert_eq!(parsed, ProxyHeader::Local);
}

#[test]
fn parse_rejects_overrunning_tlv() {
    let mut header = endpoint_header();
    // The last TLV (type 0xE0, length 1) now claims 9 bytes.
    let len = header.len();
    header[len - 3] = 0;
    header[len - 2] = 9;
    assert!(matches!(parse(&header), Err(HeaderFault::Malformed(_))));
}

#[test]
fn parse_rejects_leftover_tlv_bytes() {
    let mut header = v2_header(Command::Proxy, &[]);
    header[15] += 2;
    header.extend_from_slice(&[0xEA, 0x00]);
    assert!(matches!(parse(&header), Err(HeaderFault::Malformed(_))));
}

#[test]
fn parse_rejects_oversized_declared_length() {
    let mut header = v2_header(Command::Proxy, &[]);
    header[14] = 0xFF;
    header[15] = 0xFF;
    assert!(matches!(
        parse(&header[..16]),
        Err(HeaderFault::Malformed(_))
    ));
}

#[test]
fn parse_rejects_bad_version_and_garbage() {
    let mut header = v2_header(Command::Proxy, &[]);
    header[12] = 0x11;
    assert!(matches!(parse(&header), Err(HeaderFault::Malformed(_))));
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(HeaderFault::NotProxy));
    assert!(matches!(
        parse(b"PROXY TCP4 nonsense\r\n"),
        Err(HeaderFault::Malformed(_))
    ));
}

#[test]
fn parse_rejects_two_endpoint_tlvs() {
    let tlv = aws_tlv(ENDPOINT);
    let header = v2_header(
        Command::Proxy,
        &[(PP2_TYPE_AWS, &tlv), (PP2_TYPE_AWS, &tlv)],
    );
    assert!(matches!(parse(&header), Err(HeaderFault::Malformed(_))));
}

#[test]
fn parse_skips_other_aws_subtypes() {
    let header = v2_header(Command::Proxy, &[(PP2_TYPE_AWS, &[0x02, b'x'])]);
    let Parsed::Header(ProxyHeader::Proxy { endpoint_id, .. }, _) = parse(&header).unwrap() else {
        panic!("expected a PROXY header")
    };
    assert_eq!(endpoint_id, None);
}

#[tokio::test]
async fn read_in_one_write_keeps_payload() {
    let mut bytes = endpoint_header();
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    let (result, rest) = read_chunks(&[&bytes]).await;
    assert_eq!(result.unwrap(), expected_endpoint_header());
    assert_eq!(&rest[..], b"GET / HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn read_byte_by_byte() {
    let mut bytes = endpoint_header();
    bytes.extend_from_slice(b"G");
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    let (result, rest) = read_chunks(&chunks).await;
    assert_eq!(result.unwrap(), expected_endpoint_header());
    assert_eq!(&rest[..], b"G");
}

#[tokio::test]
async fn read_detects_second_header() {
    let mut bytes = endpoint_header();
    bytes.extend_from_slice(&endpoint_header());
    let (result, _) = read_chunks(&[&bytes]).await;
    assert_eq!(result, Err(HeaderFault::Repeated));

    // Split so the second signature arrives in pieces.
    let first = endpoint_header();
    let (result, _) = read_chunks(&[&first, b"\r\n\r", b"\n\0\r\nQUIT\n"]).await;
    assert_eq!(result, Err(HeaderFault::Repeated));

    let (result, _) = read_chunks(&[&first, b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n"]).await;
    assert_eq!(result, Err(HeaderFault::Repeated));
}

#[tokio::test]
async fn read_truncated_and_missing() {
    let header = endpoint_header();
    let (result, _) = read_chunks(&[&header[..20]]).await;
    assert_eq!(result, Err(HeaderFault::Truncated));
    let (result, _) = read_chunks(&[]).await;
    assert_eq!(result, Err(HeaderFault::Missing));
    let (result, _) = read_chunks(&[b"GET / HTTP/1.1\r\n"]).await;
    assert_eq!(result, Err(HeaderFault::NotProxy));
}

#[tokio::test(start_paused = true)]
async fn read_times_out_on_slow_peer() {
    use tokio::io::AsyncWriteExt;

    let header = endpoint_header();
    let (mut peer, mut stream) = tokio::io::duplex(1024);
    peer.write_all(&header[..10]).await.unwrap();
    let mut buf = BytesMut::new();
    let result = read(
        &mut stream,
        &mut buf,
        Duration::from_secs(3),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(result, Err(HeaderFault::Timeout(Duration::from_secs(3))));
    drop(peer);
}

#[test]
fn parse_v1_split_at_every_byte() {
    let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n";
    for end in 0..line.len() {
        assert_eq!(parse(&line[..end]), Ok(Parsed::Incomplete), "prefix {end}");
    }
    assert!(matches!(parse(line), Ok(Parsed::Header(_, n)) if n == line.len()));
    let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
    assert!(matches!(parse(&long), Err(HeaderFault::Malformed(_))));
}

#[tokio::test]
async fn sniff_classifies_first_bytes() {
    for (chunks, expected) in [
        (vec![&b"GET / HTTP/1.1\r\n"[..]], Sniffed::Other),
        (vec![&b"\x16\x03\x01"[..]], Sniffed::Other),
        (vec![&b"PRO"[..], &b"XY TCP4"[..]], Sniffed::ProxySignature),
        (vec![&b"PRI * HTTP/2.0"[..]], Sniffed::Other),
        (vec![&b"\r\n\r\n\0\r\nQUIT\n"[..]], Sniffed::ProxySignature),
        (vec![], Sniffed::Closed),
    ] {
        let mut mock = MockIo::new();
        for chunk in &chunks {
            mock.read(chunk);
        }
        let mut stream = mock.build();
        let mut buf = BytesMut::new();
        assert_eq!(
            sniff(&mut stream, &mut buf).await.unwrap(),
            expected,
            "{chunks:?}"
        );
    }
}

#[test]
fn parse_v1_rejects_bare_cr() {
    // Found by fuzzing: ppp ends a v1 line at the first CR.
    let line = b"PROXY UNKNOWN \n \rX\r\n";
    assert!(matches!(parse(line), Err(HeaderFault::Malformed(_))));
    let fuzzed = hex::decode("50524f585920554e4b4e4f574e20000000200a200d2d0d0a").unwrap();
    assert!(matches!(parse(&fuzzed), Err(HeaderFault::Malformed(_))));
}

#[test]
fn parse_unspec_family_reads_tlvs() {
    // LOCAL, AF_UNSPEC, with a TLV that claims 0x1078 bytes.
    let overrun = hex::decode("0d0a0d0a000d0a515549540a20000004e0001078").unwrap();
    assert!(matches!(parse(&overrun), Err(HeaderFault::Malformed(_))));

    // PROXY, AF_UNSPEC, with the AWS TLV: the id is read from byte 16.
    let mut header = V2_SIGNATURE.to_vec();
    let tlv = aws_tlv(ENDPOINT);
    header.extend_from_slice(&[0x21, 0x00]);
    header.extend_from_slice(&((tlv.len() + 3) as u16).to_be_bytes());
    header.push(PP2_TYPE_AWS);
    header.extend_from_slice(&(tlv.len() as u16).to_be_bytes());
    header.extend_from_slice(&tlv);
    let Parsed::Header(parsed, len) = parse(&header).unwrap() else {
        panic!("expected a whole header")
    };
    assert_eq!(len, header.len());
    assert_eq!(
        parsed,
        ProxyHeader::Proxy {
            source: None,
            endpoint_id: Some(ENDPOINT.into())
        }
    );
}

#[tokio::test(start_paused = true)]
async fn slow_request_after_header_allowed() {
    use tokio::io::AsyncWriteExt;

    let (mut peer, mut stream) = tokio::io::duplex(1024);
    peer.write_all(&endpoint_header()).await.unwrap();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        peer.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        peer
    });
    let mut buf = BytesMut::new();
    let header = read(
        &mut stream,
        &mut buf,
        Duration::from_secs(3),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(header.unwrap(), expected_endpoint_header());
    assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
    drop(writer.await.unwrap());
}
