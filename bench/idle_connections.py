#!/usr/bin/env python3
"""Keep many idle HTTP/1.1 keep-alive connections open and report a server's memory use.

Opens --count connections to --host:--port, sends one request with --header
values on each and reads the response, then leaves every connection idle for
--hold seconds. At the end it reads VmHWM and VmRSS of --pid from
/proc/PID/status and prints one JSON object on stdout.

Source addresses are spread over 127.0.0.1, 127.0.0.2, ... when one address
would use more than half of the kernel's ephemeral port range.
"""

import argparse
import asyncio
import collections
import json
import math
import os
import resource
import socket
import sys
import time

# Linux socket option that delays the choice of the source port from bind() to
# connect(), so bound sockets share ports across destinations (linux/in.h).
IP_BIND_ADDRESS_NO_PORT = 24


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="server address")
    parser.add_argument("--port", type=int, required=True, help="server port")
    parser.add_argument("--pid", type=int, required=True, help="server process whose memory is reported")
    parser.add_argument("--count", type=int, default=10000, help="number of connections")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds to keep all connections idle")
    parser.add_argument("--host-header", required=True, help="value of the Host request header")
    parser.add_argument("--header", action="append", default=[], help="extra request header, 'Name: value'")
    parser.add_argument("--concurrency", type=int, default=200, help="maximum connections being opened at once")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds allowed to connect and read one response")
    return parser.parse_args()


def raise_open_file_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        sys.exit(f"open file limit {soft} is below the {needed} needed. Raise it with ulimit -n.")


def choose_source_addresses(count):
    with open("/proc/sys/net/ipv4/ip_local_port_range") as range_file:
        low, high = (int(value) for value in range_file.read().split())
    ports_per_address = (high - low + 1) // 2
    address_count = max(1, math.ceil(count / ports_per_address))
    if address_count > 254:
        sys.exit(f"{count} connections need more than 254 loopback source addresses")
    return [f"127.0.0.{index}" for index in range(1, address_count + 1)]


def read_memory_kib(pid):
    """Return VmHWM and VmRSS of the process in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status_file:
        for line in status_file:
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                values[name] = int(rest.split()[0])
    return values


def count_open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def read_response(reader):
    """Read one HTTP/1.1 response and return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()

    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    else:
        raise ValueError(f"response {status} has neither Content-Length nor chunked body")

    if headers.get("connection", "").lower() == "close":
        raise ConnectionError(f"server sent Connection: close with status {status}")
    return status


async def open_idle_connection(args, source_address, request, limiter):
    """Connect from source_address, send the request and return (reader, writer, status)."""
    async with limiter:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source_address, 0))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.sock_connect(sock, (args.host, args.port)), args.timeout)
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(request)
            await writer.drain()
            status = await asyncio.wait_for(read_response(reader), args.timeout)
        except BaseException:
            writer.close()
            raise
        return reader, writer, status


async def wait_for_server_close(reader):
    """Return when the server closes the connection or sends unexpected bytes."""
    await reader.read(1)


async def run(args):
    header_lines = [f"Host: {args.host_header}"] + args.header
    request = ("GET / HTTP/1.1\r\n" + "\r\n".join(header_lines) + "\r\n\r\n").encode("latin-1")
    sources = choose_source_addresses(args.count)
    limiter = asyncio.Semaphore(args.concurrency)
    memory_before = read_memory_kib(args.pid)

    started = time.monotonic()
    attempts = [
        open_idle_connection(args, sources[index % len(sources)], request, limiter)
        for index in range(args.count)
    ]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    open_seconds = time.monotonic() - started

    connections = []
    status_counts = collections.Counter()
    failures = collections.Counter()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            failures[f"{type(outcome).__name__}: {outcome}"[:120]] += 1
            continue
        reader, writer, status = outcome
        status_counts[str(status)] += 1
        connections.append((reader, writer))

    watchers = [asyncio.create_task(wait_for_server_close(reader)) for reader, _ in connections]
    await asyncio.sleep(args.hold)
    closed_by_server = sum(1 for watcher in watchers if watcher.done())
    memory_after = read_memory_kib(args.pid)
    open_files = count_open_files(args.pid)

    for watcher in watchers:
        watcher.cancel()
    for _, writer in connections:
        writer.close()

    return {
        "requested": args.count,
        "source_addresses": sources,
        "connected_with_response": len(connections),
        "open_seconds": round(open_seconds, 2),
        "status_counts": dict(status_counts),
        "failures": dict(failures),
        "hold_seconds": args.hold,
        "closed_by_server_during_hold": closed_by_server,
        "server_open_files_during_hold": open_files,
        "vm_hwm_kib_before": memory_before["VmHWM"],
        "vm_rss_kib_before": memory_before["VmRSS"],
        "vm_hwm_kib": memory_after["VmHWM"],
        "vm_rss_kib": memory_after["VmRSS"],
    }


def main():
    args = parse_args()
    raise_open_file_limit(args.count + 100)
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
