"""TCP relay that plays an AWS Network Load Balancer in front of postern's private gate.

For each accepted connection the relay connects to the gate from a fixed source
address, the balancer's address that postern lists as a trusted source. It
sends a PROXY protocol v2 header first and then copies bytes both ways until
both sides have closed. With an endpoint id, the header carries the AWS VPC endpoint TLV
that a PrivateLink balancer adds: type 0xEA, value = subtype 0x01 followed by
the ASCII endpoint id.

Header layout (PROXY protocol specification, HAProxy's doc/proxy-protocol.txt,
section 2.2 "Binary header format"): 12-byte signature, version/command byte,
family/transport byte, 16-bit length of what follows, then for TCP over IPv4
the source and destination addresses and ports, then the TLVs. All integers
are big-endian.

Use as a module (``NlbRelay``, ``build_proxy_v2_header``) or from the command line::

    python nlb_relay.py --gate 127.0.0.1:18081 --endpoint-id vpce-0a1b2c3d4e5f60001
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import signal
import socket
import struct
import sys
import threading
from typing import Iterable

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
VERSION_2_COMMAND_PROXY = 0x21
VERSION_2_COMMAND_LOCAL = 0x20
FAMILY_TCP_OVER_IPV4 = 0x11
FAMILY_UNSPEC = 0x00
PP2_TYPE_AWS = 0xEA
PP2_SUBTYPE_AWS_VPCE_ID = 0x01

# Fixed part after the signature: version/command, family/transport, length.
_HEADER_PREFIX = struct.Struct("!12sBBH")
# TCP over IPv4 addresses: source address, destination address, source port, destination port.
_IPV4_ADDRESSES = struct.Struct("!4s4sHH")
_TLV_PREFIX = struct.Struct("!BH")

_COPY_BUFFER_SIZE = 64 * 1024
_ACCEPT_POLL_SECONDS = 0.2


def encode_tlv(tlv_type: int, value: bytes) -> bytes:
    """Encode one PROXY v2 TLV: type byte, 16-bit length, value."""
    if not 0 <= tlv_type <= 0xFF:
        raise ValueError(f"TLV type {tlv_type} is not a byte")
    if len(value) > 0xFFFF:
        raise ValueError(f"TLV value of {len(value)} bytes exceeds the 16-bit length field")
    return _TLV_PREFIX.pack(tlv_type, len(value)) + value


def aws_vpce_tlv(endpoint_id: str) -> bytes:
    """Encode the AWS TLV that carries a VPC endpoint id (type 0xEA, subtype 0x01)."""
    return encode_tlv(PP2_TYPE_AWS, bytes([PP2_SUBTYPE_AWS_VPCE_ID]) + endpoint_id.encode("ascii"))


def build_proxy_v2_header(
    source: tuple[str, int],
    destination: tuple[str, int],
    endpoint_id: str | None = None,
    extra_tlvs: Iterable[tuple[int, bytes]] = (),
) -> bytes:
    """Build a PROXY v2 header with the PROXY command for TCP over IPv4.

    ``extra_tlvs`` are written before the AWS TLV, so a test can check that the
    reader skips unknown types and accepts TLVs in any order.
    """
    tlvs = b"".join(encode_tlv(tlv_type, value) for tlv_type, value in extra_tlvs)
    if endpoint_id is not None:
        tlvs += aws_vpce_tlv(endpoint_id)

    addresses = _IPV4_ADDRESSES.pack(
        ipaddress.IPv4Address(source[0]).packed,
        ipaddress.IPv4Address(destination[0]).packed,
        source[1],
        destination[1],
    )
    payload = addresses + tlvs
    if len(payload) > 0xFFFF:
        raise ValueError(f"header payload of {len(payload)} bytes exceeds the 16-bit length field")

    prefix = _HEADER_PREFIX.pack(PROXY_V2_SIGNATURE, VERSION_2_COMMAND_PROXY, FAMILY_TCP_OVER_IPV4, len(payload))
    return prefix + payload


def build_proxy_v2_local_header() -> bytes:
    """Build the PROXY v2 LOCAL header that a balancer sends with its health checks."""
    return _HEADER_PREFIX.pack(PROXY_V2_SIGNATURE, VERSION_2_COMMAND_LOCAL, FAMILY_UNSPEC, 0)


@dataclasses.dataclass
class DecodedHeader:
    """Fields of a PROXY v2 header, as ``decode_proxy_v2_header`` read them."""

    command: int
    family: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    tlvs: list[tuple[int, bytes]]
    length: int

    @property
    def endpoint_id(self) -> str | None:
        """Return the VPC endpoint id from the AWS TLV, or None if there is none."""
        for tlv_type, value in self.tlvs:
            if tlv_type == PP2_TYPE_AWS and value[:1] == bytes([PP2_SUBTYPE_AWS_VPCE_ID]):
                return value[1:].decode("ascii")
        return None


def decode_proxy_v2_header(data: bytes) -> DecodedHeader:
    """Decode a PROXY v2 header at the start of ``data``.

    Raise ValueError if the header is invalid or truncated. Only TCP over IPv4
    and LOCAL are decoded, because the relay writes no other kind. ``length`` is the header's total size, so ``data[length:]`` is what
    follows it on the connection.
    """
    if len(data) < _HEADER_PREFIX.size:
        raise ValueError(f"header truncated: {len(data)} bytes, expected at least {_HEADER_PREFIX.size}")
    signature, version_command, family, payload_length = _HEADER_PREFIX.unpack_from(data)
    if signature != PROXY_V2_SIGNATURE:
        raise ValueError(f"invalid signature {signature!r}")
    if version_command >> 4 != 2:
        raise ValueError(f"invalid version {version_command >> 4}, expected 2")

    total_length = _HEADER_PREFIX.size + payload_length
    if len(data) < total_length:
        raise ValueError(f"header truncated: {len(data)} bytes, the length field promises {total_length}")
    payload = data[_HEADER_PREFIX.size : total_length]

    if family == FAMILY_UNSPEC:
        return DecodedHeader(version_command & 0x0F, family, None, None, [], total_length)
    if family != FAMILY_TCP_OVER_IPV4:
        raise ValueError(f"unsupported family/transport byte 0x{family:02x}")
    if len(payload) < _IPV4_ADDRESSES.size:
        raise ValueError(f"address block truncated: {len(payload)} bytes, expected {_IPV4_ADDRESSES.size}")

    source_address, destination_address, source_port, destination_port = _IPV4_ADDRESSES.unpack_from(payload)
    tlvs = []
    offset = _IPV4_ADDRESSES.size
    while offset < len(payload):
        if len(payload) - offset < _TLV_PREFIX.size:
            raise ValueError(f"TLV prefix truncated at payload offset {offset}")
        tlv_type, tlv_length = _TLV_PREFIX.unpack_from(payload, offset)
        offset += _TLV_PREFIX.size
        if offset + tlv_length > len(payload):
            raise ValueError(f"TLV 0x{tlv_type:02x} of {tlv_length} bytes overruns the header")
        tlvs.append((tlv_type, payload[offset : offset + tlv_length]))
        offset += tlv_length

    return DecodedHeader(
        command=version_command & 0x0F,
        family=family,
        source=(str(ipaddress.IPv4Address(source_address)), source_port),
        destination=(str(ipaddress.IPv4Address(destination_address)), destination_port),
        tlvs=tlvs,
        length=total_length,
    )


@dataclasses.dataclass
class ConnectionRecord:
    """Byte counts of one relayed connection, for tests to inspect after it closed."""

    client_peer: tuple[str, int]
    header: bytes
    bytes_to_gate: int = 0
    bytes_from_gate: int = 0
    gate_connect_error: str | None = None
    gate_read_error: str | None = None
    closed: threading.Event = dataclasses.field(default_factory=threading.Event)


class NlbRelay:
    """Accept TCP connections on a loopback port and relay each one to the gate behind a PROXY v2 header.

    ``client_address`` is the source written into the header. ``client_port``
    None means the port of the accepted connection, so each connection gets a
    distinct source. ``endpoint_id`` None sends the header without the AWS TLV.
    """

    def __init__(
        self,
        gate: tuple[str, int],
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        source_bind_address: str = "127.0.0.2",
        client_address: str = "10.1.2.3",
        client_port: int | None = None,
        endpoint_id: str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.gate = gate
        self.source_bind_address = source_bind_address
        self.client_address = client_address
        self.client_port = client_port
        self.endpoint_id = endpoint_id
        self.connect_timeout = connect_timeout
        self.connections: list[ConnectionRecord] = []

        self._listener = socket.create_server(listen)
        self._listener.settimeout(_ACCEPT_POLL_SECONDS)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._open_sockets: set[socket.socket] = set()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="nlb-relay-accept", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """Return the loopback address and port that clients connect to."""
        host, port = self._listener.getsockname()[:2]
        return host, port

    def start(self) -> NlbRelay:
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, shut down every open relayed connection, and wait for the accept thread."""
        self._stopping.set()
        self._accept_thread.join(timeout)
        self._listener.close()
        with self._lock:
            open_sockets = list(self._open_sockets)
        for sock in open_sockets:
            _shutdown_quietly(sock, socket.SHUT_RDWR)

    def __enter__(self) -> NlbRelay:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            client.settimeout(None)
            threading.Thread(
                target=self._relay_connection, args=(client, peer), name=f"nlb-relay-{peer[1]}", daemon=True
            ).start()

    def _relay_connection(self, client: socket.socket, peer: tuple[str, int]) -> None:
        source_port = self.client_port if self.client_port is not None else peer[1]
        header = build_proxy_v2_header((self.client_address, source_port), self.gate, self.endpoint_id)
        record = ConnectionRecord(client_peer=peer, header=header)
        with self._lock:
            self.connections.append(record)

        gate = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._track(client, gate)
        try:
            # Binding before connect makes the gate see the balancer's address as the peer.
            gate.bind((self.source_bind_address, 0))
            gate.settimeout(self.connect_timeout)
            gate.connect(self.gate)
            gate.settimeout(None)
            gate.sendall(header)
        except OSError as error:
            record.gate_connect_error = f"connect to gate {self.gate} failed: {error}"
            self._close_pair(client, gate)
            record.closed.set()
            return

        to_gate = threading.Thread(target=self._copy, args=(client, gate, record, True), daemon=True)
        to_gate.start()
        self._copy(gate, client, record, False)
        to_gate.join()
        self._close_pair(client, gate)
        record.closed.set()

    def _copy(self, source: socket.socket, destination: socket.socket, record: ConnectionRecord, to_gate: bool) -> None:
        """Copy bytes until ``source`` reaches end of stream, then half-close ``destination``.

        On a reset or other socket error both sockets are shut down, so the
        other direction stops too and the client sees the connection end.
        """
        while True:
            try:
                data = source.recv(_COPY_BUFFER_SIZE)
            except OSError as error:
                if not to_gate:
                    record.gate_read_error = f"read from gate failed: {error}"
                _shutdown_quietly(source, socket.SHUT_RDWR)
                _shutdown_quietly(destination, socket.SHUT_RDWR)
                return
            if not data:
                _shutdown_quietly(destination, socket.SHUT_WR)
                return
            try:
                destination.sendall(data)
            except OSError:
                _shutdown_quietly(source, socket.SHUT_RDWR)
                _shutdown_quietly(destination, socket.SHUT_RDWR)
                return
            if to_gate:
                record.bytes_to_gate += len(data)
            else:
                record.bytes_from_gate += len(data)

    def _track(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open_sockets.update(sockets)

    def _close_pair(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open_sockets.difference_update(sockets)
        for sock in sockets:
            sock.close()


def _shutdown_quietly(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        # The socket is already closed or was never connected, so there is nothing to shut down.
        pass


def _parse_host_port(text: str) -> tuple[str, int]:
    host, separator, port = text.rpartition(":")
    if not separator or not host:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}, expected HOST:PORT")
    try:
        return host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port in {text!r}, expected a number") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--listen", type=_parse_host_port, default=("127.0.0.1", 0),
        help="address and port that clients connect to (default 127.0.0.1:0, a free port)",
    )
    parser.add_argument(
        "--gate", type=_parse_host_port, required=True,
        help="postern's private gate as HOST:PORT, which is also the header's destination address",
    )
    parser.add_argument(
        "--source-bind-address", default="127.0.0.2",
        help="local address the relay connects to the gate from, the balancer's address (default 127.0.0.2)",
    )
    parser.add_argument(
        "--client-address", default="10.1.2.3",
        help="IPv4 source address written into the header (default 10.1.2.3), which the relay never connects to",
    )
    parser.add_argument(
        "--client-port", type=int, default=None,
        help="source port written into the header (default: the port of the accepted connection)",
    )
    parser.add_argument(
        "--endpoint-id", default=None,
        help="VPC endpoint id for the AWS TLV, e.g. vpce-0a1b2c3d4e5f60001 (default: no TLV)",
    )
    args = parser.parse_args(argv)

    relay = NlbRelay(
        args.gate,
        listen=args.listen,
        source_bind_address=args.source_bind_address,
        client_address=args.client_address,
        client_port=args.client_port,
        endpoint_id=args.endpoint_id,
    )
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: stop_requested.set())

    relay.start()
    host, port = relay.address
    print(f"nlb_relay: listening on {host}:{port}, relaying to {args.gate[0]}:{args.gate[1]}", flush=True)
    while not stop_requested.wait(1.0):
        pass
    relay.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
