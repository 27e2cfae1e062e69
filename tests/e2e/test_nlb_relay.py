"""Tests of the load-balancer relay itself, so a relay bug is not mistaken for a postern bug."""

from __future__ import annotations

import socket
import threading

import pytest

from nlb_relay import (
    PP2_TYPE_AWS,
    NlbRelay,
    build_proxy_v2_header,
    build_proxy_v2_local_header,
    decode_proxy_v2_header,
)

ENDPOINT_ID = "vpce-0a1b2c3d4e5f60001"


def test_header_bytes_match_layout() -> None:
    header = build_proxy_v2_header(("10.1.2.3", 40000), ("127.0.0.1", 18081), ENDPOINT_ID)

    endpoint_tlv = bytes([PP2_TYPE_AWS, 0x00, 1 + len(ENDPOINT_ID), 0x01]) + ENDPOINT_ID.encode()
    expected = (
        b"\r\n\r\n\x00\r\nQUIT\n"  # signature
        + b"\x21"  # version 2, PROXY command
        + b"\x11"  # TCP over IPv4
        + (12 + len(endpoint_tlv)).to_bytes(2, "big")
        + bytes([10, 1, 2, 3])
        + bytes([127, 0, 0, 1])
        + (40000).to_bytes(2, "big")
        + (18081).to_bytes(2, "big")
        + endpoint_tlv
    )
    assert header == expected


def test_header_decodes_back() -> None:
    header = build_proxy_v2_header(
        ("10.1.2.3", 40000), ("127.0.0.1", 18081), ENDPOINT_ID, extra_tlvs=[(0x04, b"\x00\x01")]
    )
    decoded = decode_proxy_v2_header(header + b"GET / HTTP/1.1\r\n")

    assert decoded.command == 0x1
    assert decoded.source == ("10.1.2.3", 40000)
    assert decoded.destination == ("127.0.0.1", 18081)
    assert decoded.tlvs[0] == (0x04, b"\x00\x01")
    assert decoded.endpoint_id == ENDPOINT_ID
    assert decoded.length == len(header)


def test_header_without_endpoint_has_no_tlv() -> None:
    decoded = decode_proxy_v2_header(build_proxy_v2_header(("10.1.2.3", 1), ("127.0.0.1", 2)))

    assert decoded.tlvs == []
    assert decoded.endpoint_id is None


def test_local_header_decodes_back() -> None:
    decoded = decode_proxy_v2_header(build_proxy_v2_local_header())

    assert decoded.command == 0x0
    assert decoded.source is None
    assert decoded.length == 16


def test_decoder_rejects_overrunning_tlv() -> None:
    header = bytearray(build_proxy_v2_header(("10.1.2.3", 1), ("127.0.0.1", 2), ENDPOINT_ID))
    # Bytes 16 to 27 are the addresses, so the TLV starts at 28 and byte 30 is the low byte of its length.
    header[30] += 1

    with pytest.raises(ValueError, match="overruns"):
        decode_proxy_v2_header(bytes(header))


def test_relay_sends_header_from_balancer_address() -> None:
    with socket.create_server(("127.0.0.1", 0)) as gate:
        gate.settimeout(5.0)
        gate_address = gate.getsockname()
        received: dict[str, object] = {}

        def serve_one() -> None:
            connection, peer = gate.accept()
            with connection:
                connection.settimeout(5.0)
                data = b""
                while chunk := connection.recv(4096):
                    data += chunk
                received["peer"] = peer
                received["data"] = data
                connection.sendall(b"pong")

        server = threading.Thread(target=serve_one)
        server.start()
        with NlbRelay(gate_address, client_address="10.1.2.3", endpoint_id=ENDPOINT_ID) as relay:
            with socket.create_connection(relay.address, timeout=5.0) as client:
                client.sendall(b"ping")
                client.shutdown(socket.SHUT_WR)
                reply = client.recv(4096)
            server.join(5.0)

    assert reply == b"pong"
    assert received["peer"][0] == "127.0.0.2"
    decoded = decode_proxy_v2_header(received["data"])
    assert decoded.source[0] == "10.1.2.3"
    assert decoded.destination == gate_address
    assert decoded.endpoint_id == ENDPOINT_ID
    assert received["data"][decoded.length :] == b"ping"
