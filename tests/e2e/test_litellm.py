"""End-to-end test: the official openai client streams from a real LiteLLM proxy through both postern gates.

LiteLLM serves a model with ``mock_response``, so it calls no model
provider. Its cost-map download and telemetry are switched off by environment
variables, and the model's api_base is a loopback port, so a stray provider
call would stay on this machine. Every server listens on 127.0.0.1.

The postern binary comes from $POSTERN_BIN. Its config is the example vars
file in tests/fixtures with free ports in place of the fixed ones.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import httpx2
import openai
import pytest
import yaml

from nlb_relay import NlbRelay

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures"

MODEL_NAME = "mock-gpt"
MOCK_RESPONSE = "Hello from the mock model, streamed through postern to the openai client."
LITELLM_MASTER_KEY = "sk-postern-e2e-master-key"

# The example vars file stores the SHA-256 of this token for the machine "build-bot".
MACHINE_TOKEN = "pst_example_build_bot_token_0001"
MACHINE_NAME = "build-bot"

# In the example endpoints file, ...0001 is available and owned by the allowed
# account 012345678910, and ...0002 is available but owned by 999988887777,
# which no allowed principal names.
ALLOWED_ENDPOINT_ID = "vpce-0a1b2c3d4e5f60001"
FOREIGN_ENDPOINT_ID = "vpce-0a1b2c3d4e5f60002"

PUBLIC_HOST = "litellm.example.test"
PRIVATE_HOST = "litellm.internal.example.test"

# Source address that the relay writes into the PROXY header. No connection
# goes to it. Because it is not a loopback address, the access log shows
# whether postern took the client address from the header.
RELAYED_CLIENT_ADDRESS = "10.1.2.3"

# LiteLLM 1.108.7 took about 16 s to start on a 2-core machine, so the limit leaves room for slower CI runs.
LITELLM_START_TIMEOUT_SECONDS = 180.0
POSTERN_START_TIMEOUT_SECONDS = 30.0
PROCESS_STOP_TIMEOUT_SECONDS = 15.0
ACCESS_LOG_TIMEOUT_SECONDS = 5.0
RELAY_CLOSE_TIMEOUT_SECONDS = 5.0
CLIENT_TIMEOUT = httpx2.Timeout(30.0, connect=5.0)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


class ManagedProcess:
    """A child process in its own process group, with stdout and stderr in files."""

    def __init__(self, name: str, command: list[str], *, cwd: Path, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )

    def logs(self) -> str:
        return (
            f"--- {self.name} stdout (last lines) ---\n{tail(self.stdout_path)}\n"
            f"--- {self.name} stderr (last lines) ---\n{tail(self.stderr_path)}"
        )

    def wait_until_ready(self, url: str, timeout: float) -> None:
        """Poll ``url`` until it returns 200, and fail the test with the logs if the process exits or time runs out."""
        # An empty ProxyHandler keeps urllib from sending loopback requests to a proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        last_error = "no request sent"
        while time.monotonic() < deadline:
            exit_code = self.process.poll()
            if exit_code is not None:
                pytest.fail(f"{self.name} exited with code {exit_code} before {url} returned 200\n{self.logs()}")
            try:
                with opener.open(url, timeout=2.0) as response:
                    if response.status == 200:
                        return
                    last_error = f"status {response.status}"
            except urllib.error.HTTPError as error:
                last_error = f"status {error.code}"
            except OSError as error:
                last_error = str(error)
            time.sleep(0.25)
        pytest.fail(f"{self.name}: {url} did not return 200 within {timeout:.0f} s (last: {last_error})\n{self.logs()}")

    def stop(self) -> int | None:
        """Send SIGTERM to the process group, then SIGKILL if it has not exited in time, and return the exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(PROCESS_STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(PROCESS_STOP_TIMEOUT_SECONDS)
        return self.process.returncode


def environment_without_proxies() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key.lower() not in {"http_proxy", "https_proxy", "all_proxy"}}
    env["NO_PROXY"] = "*"
    env["no_proxy"] = "*"
    return env


@dataclass
class LiteLLMServer:
    process: ManagedProcess
    port: int

    def chat_completion_requests(self) -> int:
        """Count chat completion requests in LiteLLM's access log (uvicorn writes one line per request)."""
        text = self.process.stdout_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if "POST /v1/chat/completions" in line)


@dataclass
class PosternServer:
    process: ManagedProcess
    public_port: int
    private_port: int
    admin_port: int

    def access_log(self) -> list[dict]:
        """Parse postern's stdout, where every line must be one JSON access-log record."""
        records = []
        for number, line in enumerate(self.process.stdout_path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"postern stdout line {number} is not JSON: {line!r}")
        return records

    def wait_for_access_log(self, matches: Callable[[dict], bool], description: str) -> dict:
        deadline = time.monotonic() + ACCESS_LOG_TIMEOUT_SECONDS
        while True:
            for record in self.access_log():
                if matches(record):
                    return record
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"no access-log line for {description} within {ACCESS_LOG_TIMEOUT_SECONDS:.0f} s\n"
                    f"{self.process.logs()}"
                )
            time.sleep(0.1)


@pytest.fixture(scope="module")
def litellm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteLLMServer]:
    work_dir = tmp_path_factory.mktemp("litellm")
    port = free_port()
    config = {
        "model_list": [
            {
                "model_name": MODEL_NAME,
                "litellm_params": {
                    "model": f"openai/{MODEL_NAME}",
                    "api_key": "sk-unused-by-mock-response",
                    # Port 9 (discard) on loopback, so that a provider call made despite mock_response stays here.
                    "api_base": "http://127.0.0.1:9/v1",
                    "mock_response": MOCK_RESPONSE,
                },
            }
        ],
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
    }
    config_path = work_dir / "litellm-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    env = environment_without_proxies()
    env.update(
        {
            # Use the model cost map bundled with the package instead of downloading it.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY_DISABLED": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    litellm_executable = shutil.which("litellm")
    if litellm_executable is None:
        pytest.fail("the litellm command is not on PATH; install tests/e2e/requirements.txt (tests/e2e/run.sh does)")

    command = [litellm_executable, "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)]
    process = ManagedProcess("litellm", command, cwd=work_dir, env=env, log_dir=work_dir)
    try:
        process.wait_until_ready(f"http://127.0.0.1:{port}/health/liveliness", LITELLM_START_TIMEOUT_SECONDS)
        yield LiteLLMServer(process, port)
    finally:
        process.stop()


def write_postern_config(directory: Path, public_port: int, private_port: int, admin_port: int, upstream_port: int) -> Path:
    """Copy the example vars and endpoints files into ``directory`` with the given ports, and return the vars path."""
    vars_config = yaml.safe_load((FIXTURES_DIR / "local-vars.yaml").read_text())
    vars_config["gateways"]["public"]["listen"] = f"127.0.0.1:{public_port}"
    vars_config["gateways"]["private"]["listen"] = f"127.0.0.1:{private_port}"
    vars_config["gateways"]["admin"]["listen"] = f"127.0.0.1:{admin_port}"
    vars_config["app_config"]["litellm"]["upstream"] = f"http://127.0.0.1:{upstream_port}"

    vars_path = directory / "local-vars.yaml"
    vars_path.write_text(yaml.safe_dump(vars_config, sort_keys=False))
    shutil.copyfile(FIXTURES_DIR / "endpoints.yaml", directory / vars_config["privatelink"]["endpoints_file"])
    return vars_path


@pytest.fixture(scope="module")
def postern_server(tmp_path_factory: pytest.TempPathFactory, litellm_server: LiteLLMServer) -> Iterator[PosternServer]:
    binary = os.environ.get("POSTERN_BIN")
    if not binary:
        pytest.fail("POSTERN_BIN is not set; point it at the postern binary (tests/e2e/run.sh sets it)")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"POSTERN_BIN={binary} is not an executable file; build postern first (cargo build --release)")

    work_dir = tmp_path_factory.mktemp("postern")
    public_port, private_port, admin_port = free_port(), free_port(), free_port()
    vars_path = write_postern_config(work_dir, public_port, private_port, admin_port, litellm_server.port)

    command = [binary, "serve", "--config", str(vars_path)]
    process = ManagedProcess("postern", command, cwd=work_dir, env=environment_without_proxies(), log_dir=work_dir)
    try:
        process.wait_until_ready(f"http://127.0.0.1:{admin_port}/readyz", POSTERN_START_TIMEOUT_SECONDS)
        yield PosternServer(process, public_port, private_port, admin_port)
    finally:
        process.stop()


class LoopbackTransport(httpx2.BaseTransport):
    """Send every request to one loopback address, keeping the URL's host in the Host header.

    The client can then use the app's host name without DNS, because httpx2
    builds the Host header from the URL before the transport rewrites it.
    """

    def __init__(self, address: tuple[str, int]) -> None:
        self._address = address
        self._transport = httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(host=self._address[0], port=self._address[1])
        return self._transport.handle_request(request)

    def close(self) -> None:
        self._transport.close()


def openai_client(host: str, address: tuple[str, int], headers: dict[str, str] | None = None) -> openai.OpenAI:
    """Build an openai client for ``http://host:port/v1`` whose connections go to ``address``."""
    http_client = httpx2.Client(transport=LoopbackTransport(address), timeout=CLIENT_TIMEOUT, trust_env=False)
    return openai.OpenAI(
        base_url=f"http://{host}:{address[1]}/v1",
        api_key=LITELLM_MASTER_KEY,
        default_headers=headers or {},
        http_client=http_client,
        max_retries=0,
        timeout=CLIENT_TIMEOUT,
    )


def stream_chat_completion(client: openai.OpenAI) -> list[str]:
    """Stream a chat completion and return the content of each chunk that has any."""
    stream = client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "Say hello."}],
        stream=True,
    )
    pieces = []
    with stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    return pieces


def test_litellm_streams_mock_directly(litellm_server: LiteLLMServer) -> None:
    # No postern in the path, so a failure here points at LiteLLM or the client, not the gateway.
    with openai_client("127.0.0.1", ("127.0.0.1", litellm_server.port)) as client:
        pieces = stream_chat_completion(client)

    assert len(pieces) >= 3, f"expected the mock response in several chunks, got {pieces!r}"
    assert "".join(pieces) == MOCK_RESPONSE


def test_private_gate_streams_allowed_endpoint(postern_server: PosternServer) -> None:
    gate = ("127.0.0.1", postern_server.private_port)
    with NlbRelay(gate, client_address=RELAYED_CLIENT_ADDRESS, endpoint_id=ALLOWED_ENDPOINT_ID) as relay:
        with openai_client(PRIVATE_HOST, relay.address) as client:
            pieces = stream_chat_completion(client)
        # Closing the client ends its connection, so the relay and postern close their sides too.
        for connection in relay.connections:
            connection.closed.wait(RELAY_CLOSE_TIMEOUT_SECONDS)

    assert len(pieces) >= 3, f"expected the mock response in several chunks, got {pieces!r}"
    assert "".join(pieces) == MOCK_RESPONSE
    assert relay.connections, "the client did not connect through the relay"
    assert all(record.gate_connect_error is None for record in relay.connections), relay.connections
    assert all(record.gate_read_error is None for record in relay.connections), relay.connections

    record = postern_server.wait_for_access_log(
        lambda line: line.get("gate") == "private" and line.get("endpoint_id") == ALLOWED_ENDPOINT_ID,
        f"the private request from {ALLOWED_ENDPOINT_ID}",
    )
    assert record.get("app") == "litellm", record
    assert record.get("status") == 200, record
    assert any(RELAYED_CLIENT_ADDRESS in str(value) for value in record.values()), (
        f"expected the PROXY header's source {RELAYED_CLIENT_ADDRESS} as the client address in {record}"
    )


def test_private_gate_closes_foreign_endpoint(postern_server: PosternServer, litellm_server: LiteLLMServer) -> None:
    requests_before = litellm_server.chat_completion_requests()
    gate = ("127.0.0.1", postern_server.private_port)
    with NlbRelay(gate, client_address=RELAYED_CLIENT_ADDRESS, endpoint_id=FOREIGN_ENDPOINT_ID) as relay:
        with openai_client(PRIVATE_HOST, relay.address) as client:
            with pytest.raises(openai.APIConnectionError) as raised:
                stream_chat_completion(client)
        for connection in relay.connections:
            connection.closed.wait(RELAY_CLOSE_TIMEOUT_SECONDS)

    # APITimeoutError is a subclass of APIConnectionError, but a timeout means postern kept the connection open.
    assert not isinstance(raised.value, openai.APITimeoutError), "postern neither answered nor closed the connection"
    assert relay.connections, "the client did not connect through the relay"
    assert all(record.gate_connect_error is None for record in relay.connections), (
        f"the relay could not connect to the private gate: {relay.connections}"
    )
    assert all(record.bytes_from_gate == 0 for record in relay.connections), (
        f"postern sent bytes on a connection it must close without a response: {relay.connections}"
    )
    assert litellm_server.chat_completion_requests() == requests_before, "LiteLLM received the refused request"


def test_public_gate_streams_with_machine_token(postern_server: PosternServer) -> None:
    headers = {"Proxy-Authorization": f"Bearer {MACHINE_TOKEN}"}
    with openai_client(PUBLIC_HOST, ("127.0.0.1", postern_server.public_port), headers) as client:
        pieces = stream_chat_completion(client)

    assert len(pieces) >= 3, f"expected the mock response in several chunks, got {pieces!r}"
    assert "".join(pieces) == MOCK_RESPONSE

    record = postern_server.wait_for_access_log(
        lambda line: line.get("gate") == "public" and line.get("status") == 200,
        "the public request with the machine token",
    )
    assert record.get("app") == "litellm", record
    assert MACHINE_NAME in record.values(), f"expected the identity {MACHINE_NAME} in {record}"


@pytest.mark.parametrize(
    "proxy_authorization",
    [None, "Bearer pst_not_a_configured_token", "Basic YnVpbGQtYm90OnNlY3JldA=="],
    ids=["missing", "unknown-token", "basic-scheme"],
)
def test_public_gate_rejects_without_token(
    postern_server: PosternServer, litellm_server: LiteLLMServer, proxy_authorization: str | None
) -> None:
    # The openai client always sends LiteLLM's master key in Authorization,
    # which is not a machine token either, so postern must return 401 itself.
    requests_before = litellm_server.chat_completion_requests()
    headers = {"Proxy-Authorization": proxy_authorization} if proxy_authorization else {}
    with openai_client(PUBLIC_HOST, ("127.0.0.1", postern_server.public_port), headers) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            stream_chat_completion(client)

    response = raised.value.response
    assert response.status_code == 401
    # LiteLLM's own auth errors have no WWW-Authenticate header, so this header shows that postern sent the 401.
    assert response.headers.get("www-authenticate", "").startswith("Bearer"), dict(response.headers)
    assert 'realm="postern"' in response.headers.get("www-authenticate", ""), dict(response.headers)
    assert "error" in response.json(), response.text
    assert litellm_server.chat_completion_requests() == requests_before, "postern forwarded an unauthenticated request"


def test_logs_contain_no_credentials(postern_server: PosternServer) -> None:
    # Send one authenticated request so that the logs have something to leak.
    headers = {"Proxy-Authorization": f"Bearer {MACHINE_TOKEN}"}
    with openai_client(PUBLIC_HOST, ("127.0.0.1", postern_server.public_port), headers) as client:
        stream_chat_completion(client)

    postern_server.wait_for_access_log(lambda line: line.get("gate") == "public", "a public request")
    for path in (postern_server.process.stdout_path, postern_server.process.stderr_path):
        text = path.read_text(errors="replace")
        assert MACHINE_TOKEN not in text, f"{path.name} contains the machine token"
        assert LITELLM_MASTER_KEY not in text, f"{path.name} contains LiteLLM's master key"
