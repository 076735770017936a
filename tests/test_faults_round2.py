"""Faults that used to mislead: huge build args, a silent engine, push-stream error shapes.

- Build args and labels travel in the build request's URL: one too large for the engine is a
  usage error (exit 2) naming the cause and the way out, checked before sending for both
  builders, and the engine's own 431/414 refusal reads the same.
- An engine that accepts connections and never answers is reported as not answering (exit 4),
  within the probe timeout, with how to check it; not as "start Docker" after a minute.
- Push-stream entries carry `error`, `errorDetail` or both: each shape fails the push, and an
  `unauthorized` carried by `error` alone is exit 3.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipit.adapters.engine.client import Engine, read_push_stream
from shipit.adapters.engine.request_limits import (
    MAX_QUERY_BYTES,
    check_build_query,
    encoded_query_bytes,
    url_too_long,
)
from shipit.errors import AuthError, EngineUnavailableError, ExitCode, RegistryError, UsageError
from tests.conftest import Cleanup

integration = pytest.mark.integration

TWO_MB = "x" * 2_000_000
DIGEST = "sha256:" + "d" * 64
DIGEST_LINE: dict[str, Any] = {"status": f"t1: digest: {DIGEST} size: 528"}


def shipit(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "shipit", *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"shipit {' '.join(args)} still running after {timeout:g}s: {exc.stderr!r}")
    result.seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return result


# ---------------------------------------------------------------- item 5: push-stream shapes


def test_error_only_entry_after_the_digest_line_fails_the_push() -> None:
    chunks = [DIGEST_LINE, {"error": "blob upload unknown"}]
    with pytest.raises(RegistryError) as info:
        read_push_stream(iter(chunks))
    assert info.value.kind == "upload_lost"
    assert info.value.exit_code == ExitCode.REGISTRY


def test_error_detail_only_entry_after_the_digest_line_fails_the_push() -> None:
    chunks = [DIGEST_LINE, {"errorDetail": {"message": "blob upload unknown"}}]
    with pytest.raises(RegistryError) as info:
        read_push_stream(iter(chunks))
    assert info.value.kind == "upload_lost"


def test_error_only_unauthorized_is_exit_3() -> None:
    with pytest.raises(AuthError) as info:
        read_push_stream(iter([{"error": "unauthorized: authentication required"}]))
    assert info.value.exit_code == ExitCode.AUTH


def test_error_detail_only_unauthorized_is_exit_3() -> None:
    chunks = [{"errorDetail": {"message": "unauthorized: authentication required"}}]
    with pytest.raises(AuthError):
        read_push_stream(iter(chunks))


def test_error_only_unauthorized_exits_3_through_the_cli(project: Path, fake_api: Any) -> None:
    from typer.testing import CliRunner

    from shipit.cli import app
    from tests.fakes import FakeRegistries, add_built_image

    FakeRegistries(fake_api).install()
    _, references = add_built_image(fake_api, project)
    tag = references[0].split(":", 1)[1]
    fake_api.push_chunks[f"localhost:5000/demo:{tag}"] = [
        {"status": "Preparing", "id": "abc"},
        {"error": "unauthorized: authentication required"},
    ]
    result = CliRunner().invoke(app, ["push", "--registry", "localhost:5000", "--tag", tag])
    assert result.exit_code == ExitCode.AUTH, result.output
    # No credentials were sent: the message says so and how to give them (issue 13, item 11).
    assert "requires credentials and none were sent" in result.stderr


def test_error_only_entry_after_digest_exits_6_through_the_cli(
    project: Path, fake_api: Any
) -> None:
    from typer.testing import CliRunner

    from shipit.cli import app
    from tests.fakes import FakeRegistries, add_built_image

    FakeRegistries(fake_api).install()
    _, references = add_built_image(fake_api, project)
    tag = references[0].split(":", 1)[1]
    fake_api.push_chunks[f"localhost:5000/demo:{tag}"] = [
        {"status": f"{tag}: digest: {DIGEST} size: 528"},
        {"error": "blob upload unknown"},
    ]
    result = CliRunner().invoke(
        app, ["push", "--registry", "localhost:5000", "--tag", tag, "--retries", "1"]
    )
    assert result.exit_code == ExitCode.REGISTRY, result.output
    assert DIGEST not in result.stdout
    assert "lost the upload" in result.stderr


# ---------------------------------------------------------------- item 2: build args in the URL


def test_build_query_within_the_limit_passes() -> None:
    check_build_query({"A": "x" * 900_000}, {"l": "v"})


def test_a_2mb_build_arg_is_a_usage_error_naming_the_url_and_the_way_out() -> None:
    with pytest.raises(UsageError) as info:
        check_build_query({"SMALL": "1", "BIG": TWO_MB}, {"org.opencontainers.image.title": "x"})
    error = info.value
    assert error.exit_code == ExitCode.USAGE
    assert "request URL" in error.message
    assert "build arg BIG" in error.message and "2.0 MB" in error.message
    assert error.hint is not None and "--secret" in error.hint and "COPY" in error.hint
    assert TWO_MB[:100] not in error.message  # the value itself is never printed


def test_the_size_is_measured_encoded() -> None:
    # Each of these characters takes three bytes once percent-encoded.
    assert encoded_query_bytes({"A": "/" * 400_000}) > MAX_QUERY_BYTES
    with pytest.raises(UsageError):
        check_build_query({"A": "/" * 400_000})


def test_a_huge_label_is_named_as_a_label() -> None:
    with pytest.raises(UsageError, match=r"label big\.label"):
        check_build_query({}, {"big.label": TWO_MB})


@pytest.mark.parametrize("status", [414, 431])
def test_the_engines_url_refusals_read_as_usage_errors(status: int) -> None:
    error = url_too_long(status)
    assert isinstance(error, UsageError) and "request URL" in error.message
    assert url_too_long(400) is None and url_too_long(None) is None


def _write_project(path: Path, value: str, name: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "Dockerfile").write_text("FROM scratch\nARG BIG\nCOPY a.txt /\n")
    (path / "a.txt").write_text(uuid.uuid4().hex)
    (path / "shipit.toml").write_text(f'name = "{name}"\n\n[build_args]\nBIG = "{value}"\n')


@integration
@pytest.mark.parametrize("buildkit", ["1", "0"])
def test_a_2mb_build_arg_from_the_config_file_exits_2_on_both_builders(
    buildkit: str, tmp_path: Path, docker_api: Any
) -> None:
    name = f"shipit-bigarg-{uuid.uuid4().hex[:8]}"
    _write_project(tmp_path / "app", TWO_MB, name)
    run = shipit(
        "build", ".", "--no-latest", "--tag", "t1",
        cwd=tmp_path / "app",
        env={"DOCKER_BUILDKIT": buildkit},
        timeout=60,
    )  # fmt: skip
    assert run.returncode == ExitCode.USAGE, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert "request URL" in run.stderr and "--secret" in run.stderr
    assert TWO_MB[:200] not in run.stderr
    assert not docker_api.images(name=name)


@integration
@pytest.mark.parametrize("buildkit", ["1", "0"])
def test_a_build_arg_just_under_the_limit_builds(
    buildkit: str, tmp_path: Path, docker_api: Any, engine_cleanup: Cleanup
) -> None:
    """The limit is not tighter than the engine's: 990 kB of build arg still builds."""
    name = f"shipit-bigarg-{uuid.uuid4().hex[:8]}"
    _write_project(tmp_path / "app", "x" * 990_000, name)
    engine_cleanup.images.append(f"{name}:t1")
    run = shipit(
        "build", ".", "--no-latest", "--tag", "t1",
        cwd=tmp_path / "app",
        env={"DOCKER_BUILDKIT": buildkit},
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]


def _context_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        data = b"FROM scratch\nARG BIG\nCOPY Dockerfile /\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@integration
@pytest.mark.parametrize("builder", ["buildkit", "legacy"])
def test_the_engines_own_431_is_a_usage_error(
    builder: str, monkeypatch: pytest.MonkeyPatch, docker_api: Any
) -> None:
    """With the check before sending switched off, the engine's refusal still reads right."""
    import shipit.adapters.engine.buildkit.transport as transport
    import shipit.adapters.engine.client as client

    monkeypatch.setattr(client, "check_build_query", lambda *a, **k: None)
    monkeypatch.setattr(transport, "check_build_query", lambda *a, **k: None)
    engine = Engine.connect(os.environ, timeout=60)
    tag = f"shipit-bigarg-{uuid.uuid4().hex[:8]}:t1"
    with pytest.raises(UsageError) as info:
        if builder == "legacy":
            engine.build(
                io.BytesIO(_context_tar()),
                dockerfile="Dockerfile",
                tag=tag,
                buildargs={"BIG": TWO_MB},
                labels={},
            )
        else:
            from shipit.adapters.engine.buildkit.build import run_build
            from shipit.adapters.engine.buildkit.transport import BuildRequest

            request = BuildRequest(tags=[tag], dockerfile="Dockerfile", buildargs={"BIG": TWO_MB})
            run_build(engine, request, _context_tar())
    assert "431" in info.value.message and "request URL" in info.value.message
    assert TWO_MB[:200] not in info.value.message


# ---------------------------------------------------------------- item 3: a silent engine


class SilentEngine:
    """Accepts connections (unix or TCP), reads what arrives, never answers."""

    def __init__(self, family: int, address: Any):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.accepted = 0
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._held:
            conn.close()
        self.sock.close()


@pytest.fixture(params=["unix", "tcp"])
def silent_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    if request.param == "unix":
        path = tmp_path / "silent.sock"
        server = SilentEngine(socket.AF_UNIX, str(path))
        host = f"unix://{path}"
    else:
        server = SilentEngine(socket.AF_INET, ("127.0.0.1", 0))
        host = f"tcp://127.0.0.1:{server.sock.getsockname()[1]}"
    try:
        yield host, server
    finally:
        server.close()


def test_connect_reports_a_silent_engine_as_not_answering(
    silent_engine: tuple[str, SilentEngine],
) -> None:
    host, server = silent_engine
    started = time.monotonic()
    with pytest.raises(EngineUnavailableError) as info:
        Engine.connect({"DOCKER_HOST": host}, timeout=120, probe_timeout=1)
    assert time.monotonic() - started < 10
    assert server.accepted >= 1
    error = info.value
    assert "not answering" in error.message and host in error.message
    assert "start Docker" not in (error.hint or "")
    assert error.hint is not None and "_ping" in error.hint and "docker version" in error.hint


def test_connect_keeps_start_docker_for_a_missing_engine(tmp_path: Path) -> None:
    host = f"unix://{tmp_path / 'nobody.sock'}"
    with pytest.raises(EngineUnavailableError) as info:
        Engine.connect({"DOCKER_HOST": host}, timeout=5)
    assert "cannot reach" in info.value.message
    assert "start Docker" in (info.value.hint or "")


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_cli_reports_a_silent_engine_within_seconds(kind: str, tmp_path: Path) -> None:
    """`shipit build` on a silent unix socket, `shipit push` on a silent TCP port."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY Dockerfile /\n")
    if kind == "unix":
        server = SilentEngine(socket.AF_UNIX, str(tmp_path / "silent.sock"))
        host = f"unix://{tmp_path / 'silent.sock'}"
        args = ["build", ".", "--name", "silent"]
    else:
        server = SilentEngine(socket.AF_INET, ("127.0.0.1", 0))
        host = f"tcp://127.0.0.1:{server.sock.getsockname()[1]}"
        args = ["push", "--registry", "127.0.0.1:5000", "--name", "silent", "--tag", "t1"]
    try:
        run = shipit(*args, cwd=tmp_path, env={"DOCKER_HOST": host}, timeout=45)
    finally:
        server.close()
    assert run.returncode == ExitCode.ENGINE, run.stderr
    assert run.seconds < 30, run.stderr
    assert "not answering" in run.stderr and host in run.stderr
    assert "start Docker" not in run.stderr
    assert "Traceback" not in run.stderr


# ---------------------------------------------------------------- item 1: unauthorized, checked


def _auth_push(project: Path, fake_api: Any, accepts: bool, *, credentials: bool = True) -> Any:
    from typer.testing import CliRunner

    from shipit.cli import app
    from tests.fakes import FakeRegistries, add_built_image

    registries = FakeRegistries(fake_api).install()
    registries.accepts_login = accepts
    _, references = add_built_image(fake_api, project)
    tag = references[0].split(":", 1)[1]
    refusal = "unauthorized: authentication required"
    fake_api.push_errors[f"localhost:5000/demo:{tag}"] = [{"error": refusal}]
    env = {"SHIPIT_REGISTRY_USERNAME": "ci", "SHIPIT_REGISTRY_PASSWORD": "pw-0123456789"}
    result = CliRunner().invoke(
        app, ["push", "--registry", "localhost:5000", "--tag", tag], env=env if credentials else {}
    )
    return result, registries, [c for c in fake_api.calls if c[0] == "push"]


def test_unauthorized_with_credentials_the_registry_accepts_is_retried(
    project: Path, fake_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipit.services.retry import RetryPolicy

    monkeypatch.setattr(RetryPolicy, "delay", lambda self, failures, error, rng: 0.0)
    result, registries, pushes = _auth_push(project, fake_api, accepts=True)
    assert result.exit_code == 0, result.output
    assert len(pushes) == 2
    assert ("CHECK", "localhost:5000", "demo", "") in registries.requests
    assert "auth_unverified" in result.stderr and "retry 1 in" in result.stderr
    assert "pw-0123456789" not in result.output


def test_unauthorized_confirmed_by_the_registry_is_exit_3(project: Path, fake_api: Any) -> None:
    result, registries, pushes = _auth_push(project, fake_api, accepts=False)
    assert result.exit_code == ExitCode.AUTH, result.output
    assert len(pushes) == 1
    assert ("CHECK", "localhost:5000", "demo", "") in registries.requests
    assert "refused the credentials: unauthorized" in result.stderr


def test_anonymous_unauthorized_is_exit_3_without_a_check(project: Path, fake_api: Any) -> None:
    result, registries, pushes = _auth_push(project, fake_api, accepts=True, credentials=False)
    assert result.exit_code == ExitCode.AUTH, result.output
    assert len(pushes) == 1
    assert not [r for r in registries.requests if r[0] == "CHECK"]
