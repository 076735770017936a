"""moto's server as a subprocess on loopback: the AWS APIs (ECR, STS, ...) for boto3 and awscli.

Usage::

    with running_moto_server() as moto:
        monkeypatch.setattr(os, "environ", {**os.environ, **moto.env()})
        boto3.client("sts").get_caller_identity()  # account 123456789012

moto stores no image data: for pushes, pair it with ``registry.running_ecr_registry``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from tests.support import die_with_parent
from tests.support.ports import LOOPBACK, free_port

DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
START_TIMEOUT = 30.0


class MotoServerError(RuntimeError):
    """moto's server could not be started or answered unexpectedly."""


def moto_server_command() -> list[str] | None:
    """How to start moto's server here (same interpreter first), or None when unavailable."""
    try:
        server_importable = importlib.util.find_spec("moto.server") is not None
        flask_importable = importlib.util.find_spec("flask_cors") is not None
    except (ImportError, ValueError):
        server_importable = flask_importable = False
    if server_importable and flask_importable:
        return [sys.executable, "-m", "moto.server"]
    binary = shutil.which("moto_server")
    return [binary] if binary else None


def moto_server_missing() -> str | None:
    """A skip reason when moto's server cannot run here, else None."""
    if moto_server_command() is None:
        return "moto's server is not installed (pip install 'moto[server]')"
    return None


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only, never via an environment proxy
    return session


@dataclass
class MotoServer:
    """A running moto server."""

    port: int
    region: str = DEFAULT_REGION
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_file: IO[bytes] | None = field(default=None, repr=False)
    _owned_log: bool = field(default=False, repr=False)

    host = LOOPBACK
    account_id = ACCOUNT_ID

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self, region: str | None = None) -> dict[str, str]:
        """Environment that points boto3/awscli at this server with dummy credentials.

        It also disables the EC2 metadata service look-up (no traffic off loopback). It does
        not remove ``AWS_PROFILE`` or session tokens already in the environment: drop those
        in the test (``monkeypatch.delenv``) when they are set.
        """
        region = region or self.region
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, service: str, region: str | None = None, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` bound to this server (explicit endpoint and creds)."""
        import boto3

        make_client: Any = boto3.client  # the stubs only accept literal service names
        return make_client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=region or self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            **kwargs,
        )

    def reset(self) -> None:
        """Forget every resource (``POST /moto-api/reset``)."""
        with _session() as session:
            response = session.post(f"{self.endpoint_url}/moto-api/reset", timeout=10)
        if response.status_code != 200:
            raise MotoServerError(f"moto reset: HTTP {response.status_code}")

    def log_text(self) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Terminate the server (SIGTERM, SIGKILL after 5 s). Idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._owned_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)


def _wait_ready(server: MotoServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    with _session() as session:
        while time.monotonic() < deadline:
            if server.process is None or server.process.poll() is not None:
                raise MotoServerError(f"moto server exited early:\n{server.log_text()[-2000:]}")
            try:
                response = session.get(f"{server.endpoint_url}/moto-api/data.json", timeout=2)
            except requests.RequestException as exc:
                last_error = str(exc)
            else:
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}"
            time.sleep(0.1)
    raise MotoServerError(
        f"moto server on {server.endpoint_url} not ready after {timeout:.0f}s ({last_error}):\n"
        f"{server.log_text()[-2000:]}"
    )


def _start(port: int, region: str, log_path: Path | None, timeout: float) -> MotoServer:
    command = moto_server_command()
    if command is None:
        raise MotoServerError("moto's server is not installed (pip install 'moto[server]')")
    owned = log_path is None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="moto-server-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    log_file = log_path.open("ab")
    server = MotoServer(
        port=port, region=region, log_path=log_path, _log_file=log_file, _owned_log=owned
    )
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    try:
        server.process = subprocess.Popen(
            die_with_parent([*command, "-H", LOOPBACK, "-p", str(port)]),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def running_moto_server(
    port: int | None = None,
    *,
    region: str = DEFAULT_REGION,
    log_path: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[MotoServer]:
    """Run ``moto_server -H 127.0.0.1 -p PORT`` (a free port by default) for the block.

    The log goes to ``log_path`` (kept) or a temporary file (removed on stop).
    """
    attempts = 1 if port is not None else 3
    server: MotoServer | None = None
    for attempt in range(attempts):
        try:
            server = _start(port if port is not None else free_port(), region, log_path, timeout)
            break
        except MotoServerError as exc:
            if "address already in use" not in str(exc).lower() or attempt == attempts - 1:
                raise
    assert server is not None
    try:
        yield server
    finally:
        server.stop()
