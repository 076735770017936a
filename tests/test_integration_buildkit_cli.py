"""BuildKit sessions through the real `shipit` CLI, as a user runs it: a private `FROM` after
`shipit login`, `--cache-from` an authenticated registry onto an empty builder cache, build
secrets (also against an engine reached over TCP) and SSH agent forwarding.

The library-level versions live in tests/buildkit/test_session_integration.py; its helpers
(registry, agent, socat forwarder, agent probe) are reused here.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.buildkit.test_session_integration import (
    AGENT_PROBE,
    PASSWORD,
    USER,
    auth_registry,  # noqa: F401 - a fixture the tests below take
    forwarded_engine,
    push,
    ssh_agent,  # noqa: F401 - a fixture the tests below take
)
from tests.conftest import Cleanup, run_shipit
from tests.support.ports import held_closed_port
from tests.support.registry import Registry

pytestmark = pytest.mark.integration


def _context(root: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (root / name).write_text(text)
    return root


def _shipit(
    *args: str, cwd: Path, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`shipit ARGS` in `cwd` with plain progress (stderr is a pipe; CI unset as on a laptop).

    The context is the working directory, as a user runs shipit in their project: `push`
    derives its tags from the working directory's git state, `build` from the context's.
    """
    return run_shipit(*args, env={"CI": "", **(env or {})}, input=input, cwd=cwd)


def _build(
    context: Path, name: str, cleanup: Cleanup, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`shipit build CONTEXT --name NAME --tag test` (and NAME:latest); both removed later."""
    cleanup.images.extend([f"{name}:test", f"{name}:latest", f"{name}:buildcache"])
    return _shipit("build", "--name", name, "--tag", "test", *args, cwd=context, env=env)


def _login(registry: Registry) -> subprocess.CompletedProcess[str]:
    return _shipit(
        "login",
        "--registry",
        registry.address,
        "--username",
        USER,
        "--password-stdin",
        cwd=registry.root.parent,
        input=PASSWORD,
    )


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def _assert_clean_failure(result: subprocess.CompletedProcess[str], *secret_values: str) -> None:
    assert result.returncode not in (0, 1), _output(result)[-3000:]  # 1 is an internal error
    assert "Traceback" not in _output(result), _output(result)[-3000:]
    for value in secret_values:
        assert value not in _output(result)


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one `error: ...` line shipit ends a failure with."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def _cached_step(stderr: str, step: str) -> bool:
    """Whether docker's plain progress marks the step whose name contains `step` CACHED."""
    match = re.search(rf"^(#\d+) \[[^\]]*\] {re.escape(step)}", stderr, re.MULTILINE)
    assert match, stderr[-3000:]
    return f"{match.group(1)} CACHED" in stderr


# ---------------------------------------------------------------- registry credentials


def test_private_from_builds_after_shipit_login_and_fails_clearly_without(
    docker_api: Any,
    busybox_image: str,
    auth_registry: Registry,  # noqa: F811
    engine_cleanup: Cleanup,
    unique: str,
    tmp_path: Path,
) -> None:
    base = push(docker_api, auth_registry, busybox_image, f"shipit-bkcli-base-{unique}")
    context = _context(
        tmp_path / "ctx", f"FROM {base}\nRUN echo {unique} on private base | busybox rev\n"
    )
    name = f"shipit-bkcli-private-{unique}"

    # The per-test Docker config holds no login yet: the engine cannot pull the base.
    anonymous = _build(context, name, engine_cleanup, "--no-cache")
    _assert_clean_failure(anonymous, PASSWORD)
    assert anonymous.returncode == 5, _output(anonymous)[-3000:]
    error = _error_line(anonymous)
    assert f"base image {base} is not available" in error, anonymous.stderr[-3000:]
    assert "none are configured" in error and "shipit login" in anonymous.stderr
    assert "log in to its registry" in anonymous.stderr  # the hint says what to do

    login = _login(auth_registry)
    assert login.returncode == 0, _output(login)[-3000:]
    assert PASSWORD not in _output(login)
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    assert auth_registry.address in config.read_text()

    built = _build(context, name, engine_cleanup, "-v", "--no-cache")
    assert built.returncode == 0, _output(built)[-3000:]
    assert f"esab etavirp no {unique[::-1]}" in built.stderr  # the step ran on the private base
    assert PASSWORD not in _output(built)

    # A fresh Docker config (another user, a new runner) has no login again.
    fresh = _build(
        context, name, engine_cleanup, "--no-cache", env={"DOCKER_CONFIG": str(tmp_path / "fresh")}
    )
    _assert_clean_failure(fresh, PASSWORD)
    assert fresh.returncode == anonymous.returncode


def test_cache_from_an_authenticated_registry_onto_an_empty_builder_cache(
    docker_api: Any,
    busybox_image: str,
    auth_registry: Registry,  # noqa: F811
    engine_cleanup: Cleanup,
    unique: str,
    tmp_path: Path,
) -> None:
    login = _login(auth_registry)
    assert login.returncode == 0, _output(login)[-3000:]
    dockerfile = (
        f"FROM {busybox_image}\n"
        f"RUN echo {unique} $(busybox cat /proc/sys/kernel/random/uuid) > /stamp\n"
    )
    context = _context(tmp_path / "ctx", dockerfile)
    name = f"shipit-bkcli-cf-{unique}"
    remote = f"{auth_registry.address}/{name}"
    engine_cleanup.images.extend([f"{remote}:test", f"{remote}:latest"])

    first = _build(context, name, engine_cleanup)
    assert first.returncode == 0, _output(first)[-3000:]
    stamp = _docker("run", "--rm", f"{name}:latest", "cat", "/stamp")
    assert stamp.startswith(unique)
    pushed = _shipit(
        "push", "--registry", auth_registry.address, "--name", name, "--tag", "test", cwd=context
    )
    assert pushed.returncode == 0, _output(pushed)[-3000:]
    assert PASSWORD not in _output(pushed)
    assert auth_registry.manifest_digest(name, "latest") is not None

    for reference in (f"{name}:test", f"{name}:latest", f"{remote}:test", f"{remote}:latest"):
        _docker("image", "rm", "--force", reference)  # forced: absent tags are no error
    _docker("builder", "prune", "-af")  # an empty runner

    again = _build(context, name, engine_cleanup, "--cache-from", f"{remote}:latest")
    assert again.returncode == 0, _output(again)[-3000:]
    assert PASSWORD not in _output(again)
    assert _cached_step(again.stderr, "RUN echo"), again.stderr[-3000:]
    assert _docker("run", "--rm", f"{name}:latest", "cat", "/stamp") == stamp


# ---------------------------------------------------------------- secrets

SECRET_DOCKERFILE = (
    "RUN --mount=type=secret,id=tok,required=true --mount=type=secret,id=f,required=true "
    "busybox sha256sum /run/secrets/tok /run/secrets/f | busybox tee /hashes\n"
)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _secret_build(
    tmp_path: Path, busybox_image: str, cleanup: Cleanup, unique: str, env: dict[str, str]
) -> tuple[str, str, str]:
    """Build with `--secret id=tok,env=TOK --secret id=f,src=FILE` at -v; check the hashes
    reached the step and neither value reached output, history or the saved image.
    Returns (image tag, env value, file value)."""
    env_value, file_value = f"env-{secrets.token_hex(16)}", f"file-{secrets.token_hex(16)}"
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(file_value)
    context = _context(tmp_path / "ctx", f"FROM {busybox_image}\n{SECRET_DOCKERFILE}")
    name = f"shipit-bkcli-secret-{unique}"
    result = _build(
        context,
        name,
        cleanup,
        "-v",
        "--no-cache",
        "--secret",
        "id=tok,env=TOK",
        "--secret",
        f"id=f,src={secret_file}",
        env={**env, "TOK": env_value},
    )
    assert result.returncode == 0, _output(result)[-3000:]
    for value in (env_value, file_value):
        assert _sha256(value) in result.stderr, result.stderr[-3000:]
    hashes = _docker("run", "--rm", f"{name}:test", "cat", "/hashes")
    assert f"{_sha256(env_value)}  /run/secrets/tok" in hashes
    assert f"{_sha256(file_value)}  /run/secrets/f" in hashes
    history = _docker("history", "--no-trunc", f"{name}:test")
    saved = subprocess.run(["docker", "save", f"{name}:test"], capture_output=True, check=True)
    for value in (env_value, file_value):
        assert value not in _output(result)
        assert value not in history
        assert value.encode() not in saved.stdout
    return f"{name}:test", env_value, file_value


def test_secrets_from_env_and_file_reach_the_step_and_nothing_else(
    busybox_image: str, engine_cleanup: Cleanup, unique: str, tmp_path: Path
) -> None:
    _secret_build(tmp_path, busybox_image, engine_cleanup, unique, env={})


def test_a_required_secret_not_given_fails_naming_it(
    busybox_image: str, engine_cleanup: Cleanup, unique: str, tmp_path: Path
) -> None:
    missing = f"deploy_key_{unique}"
    dockerfile = (
        f"FROM {busybox_image}\n"
        f"RUN --mount=type=secret,id={missing},required=true cat /run/secrets/{missing}\n"
    )
    context = _context(tmp_path / "ctx", dockerfile)
    name = f"shipit-bkcli-required-{unique}"
    value = secrets.token_hex(16)
    # Another secret is given (a session is open), and none at all.
    for args in (("--secret", "id=other,env=OTHER"), ()):
        result = _build(context, name, engine_cleanup, "--no-cache", *args, env={"OTHER": value})
        _assert_clean_failure(result, value)
        assert result.returncode == 5, _output(result)[-3000:]
        assert f"secret {missing} not found" in _error_line(result), result.stderr[-3000:]


def test_a_missing_secret_file_exits_2_before_the_engine_is_called(
    busybox_image: str, engine_cleanup: Cleanup, unique: str, tmp_path: Path
) -> None:
    context = _context(tmp_path / "ctx", f"FROM {busybox_image}\n{SECRET_DOCKERFILE}")
    absent = tmp_path / f"no-such-secret-{unique}.txt"
    # The engine "lives" on a port nobody listens on: reaching for it would be another error.
    with held_closed_port() as port:
        assert port is not None
        result = _build(
            context,
            f"shipit-bkcli-nofile-{unique}",
            engine_cleanup,
            "--secret",
            "id=tok,env=TOK",
            "--secret",
            f"id=f,src={absent}",
            env={"TOK": "x", "DOCKER_HOST": f"tcp://127.0.0.1:{port}"},
        )
    assert result.returncode == 2, _output(result)[-3000:]
    assert "Traceback" not in _output(result)
    assert _error_line(result) == f"error: secret 'f': file {absent} does not exist"


def test_secret_build_against_an_engine_reached_over_tcp(
    busybox_image: str, engine_cleanup: Cleanup, unique: str, tmp_path: Path
) -> None:
    with forwarded_engine() as port:
        tag, _, _ = _secret_build(
            tmp_path,
            busybox_image,
            engine_cleanup,
            unique,
            env={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"},
        )
    assert _docker("image", "inspect", "--format", "{{.Id}}", tag).startswith("sha256:")


# ---------------------------------------------------------------- ssh


def test_ssh_default_forwards_the_agent_and_its_absence_fails_clearly(
    python_image: str,
    engine_cleanup: Cleanup,
    unique: str,
    tmp_path: Path,
    ssh_agent: tuple[str, str],  # noqa: F811
) -> None:
    sock, comment = ssh_agent
    dockerfile = (
        f"FROM {python_image}\n"
        f"RUN --mount=type=ssh,required=true --mount=type=bind,source=probe.py,target=/probe.py "
        f'test -S "$SSH_AUTH_SOCK" && echo {unique} socket | rev && python3 /probe.py\n'
    )
    context = _context(tmp_path / "ctx", dockerfile, {"probe.py": AGENT_PROBE})
    name = f"shipit-bkcli-ssh-{unique}"
    env = {"SSH_AUTH_SOCK": sock}
    # -v shows the steps' output (plain progress alone shows their names and times).
    result = _build(context, name, engine_cleanup, "-v", "--no-cache", "--ssh", "default", env=env)
    assert result.returncode == 0, _output(result)[-3000:]
    assert (
        f"tekcos {unique[::-1]}" in result.stderr
    )  # `test -S` passed (reversed: not the step text)
    assert f"identities 1 {comment}" in result.stderr
    assert "remove-all answer 5" in result.stderr  # SSH_AGENT_FAILURE: read-only forwarding

    without = _build(context, name, engine_cleanup, "--no-cache", env=env)
    _assert_clean_failure(without)
    assert without.returncode == 5, _output(without)[-3000:]
    assert "no SSH key" in _error_line(without), without.stderr[-3000:]
    assert "--ssh default" in without.stderr
