"""Shared fixtures: the fake engine for unit tests, and a real engine for integration tests.

Integration tests skip with a reason when no engine (or registry tool) is reachable, except
when SHIPIT_REQUIRE_DOCKER=1 (CI), where any skip of an integration test is a failure.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipit.cli.wiring import Clients
from tests.fakes import FakeAPI

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIRE_DOCKER = os.environ.get("SHIPIT_REQUIRE_DOCKER") == "1"
PYTHON_IMAGE = os.environ.get("SHIPIT_PYTHON_IMAGE", "shipit.local/python:3.11-bookworm")
BUSYBOX_IMAGE = os.environ.get("SHIPIT_BUSYBOX_IMAGE", "shipit.local/busybox:latest")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if (
        REQUIRE_DOCKER
        and report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("integration")
    ):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"integration test skipped but SHIPIT_REQUIRE_DOCKER=1: {reason}"


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep tests away from the user's Docker config, token cache and CI variables."""
    home = tmp_path_factory.mktemp("home")
    # The builder stage's cache image is built by default only in CI: tests see one behaviour
    # on a laptop and in CI (tests of that default unset or set it themselves).
    monkeypatch.setenv("SHIPIT_CACHE_STAGE", "1")
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    monkeypatch.setenv("SHIPIT_CACHE_DIR", str(home / ".cache"))
    for var in (
        # CI changes the output (plain timestamped lines) and defaults: tests that need it set it.
        "CI",
        "GITHUB_ACTIONS",
        "GITHUB_OUTPUT",
        "GITHUB_STEP_SUMMARY",
        "GITLAB_CI",
        "CODEBUILD_BUILD_ID",
        "DOCKERHUB_USERNAME",
        "DOCKERHUB_TOKEN",
        "DOCKERHUB_NAMESPACE",
        "SHIPIT_REGISTRY_USERNAME",
        "SHIPIT_REGISTRY_PASSWORD",
        "SHIPIT_NAME",
        "SHIPIT_TAGS",
        "SHIPIT_VERSION",
        "SHIPIT_REGISTRIES",
        # moto's mock_aws puts its own keys into os.environ: one test's leftovers must not
        # reach the next (shipit masks AWS secrets from the environment first).
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def clients() -> Iterator[Clients]:
    """The clients commands run with (the wiring's one seam): real ones until a test sets its own.

    `fake_api` puts a fake engine in; `FakeRegistries.install` a fake registry HTTP client.
    """
    from shipit.cli import wiring

    with wiring.using(wiring.Clients()) as replaceable:
        yield replaceable


@pytest.fixture
def fake_api(clients: Clients) -> FakeAPI:
    """A fake engine the commands get from the wiring, so CLI tests need no Docker."""
    from shipit.adapters.engine.client import Engine

    api = FakeAPI()
    clients.engine = lambda env, timeout=60.0: Engine(api)
    return api


# ---------------------------------------------------------------- real engine


@pytest.fixture(scope="session")
def docker_api() -> Any:
    """A docker-py APIClient for the real engine, or a skip (a failure in CI)."""
    try:
        import docker

        api = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
        api.ping()
    except Exception as exc:  # any reason the engine is unusable
        pytest.skip(f"no Docker engine reachable ({type(exc).__name__}): run .ci/setup")
    return api


@pytest.fixture(scope="session")
def python_image(docker_api: Any) -> str:
    import docker.errors

    try:
        docker_api.inspect_image(PYTHON_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"base image {PYTHON_IMAGE} is missing: run .ci/setup")
    return PYTHON_IMAGE


@pytest.fixture(scope="session")
def busybox_image(docker_api: Any) -> str:
    import docker.errors

    try:
        docker_api.inspect_image(BUSYBOX_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"image {BUSYBOX_IMAGE} is missing: run .ci/setup")
    return BUSYBOX_IMAGE


class Cleanup:
    """Records what a test creates on the engine and removes it afterwards."""

    def __init__(self, api: Any):
        self.api = api
        self.images: list[str] = []
        self.containers: list[str] = []
        self.networks: list[str] = []

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)

    def track(self, *references: str) -> None:
        """Remove these tags later, and the images they name now: a tag a later build moves
        would otherwise leave its earlier image behind, untagged."""
        for reference in references:
            self.images.append(reference)
            with contextlib.suppress(Exception):
                self.images.append(self.api.inspect_image(reference)["Id"])

    def close(self) -> None:
        for container in self.containers:
            with contextlib.suppress(Exception):
                self.api.remove_container(container, force=True)
        for network in self.networks:
            with contextlib.suppress(Exception):
                self.api.remove_network(network)
        for image in reversed(self.images):
            with contextlib.suppress(Exception):
                self.api.remove_image(image, force=True)


@pytest.fixture
def engine_cleanup(docker_api: Any) -> Iterator[Cleanup]:
    cleanup = Cleanup(docker_api)
    yield cleanup
    cleanup.close()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny git project with a Dockerfile, as the working directory."""
    (tmp_path / "Dockerfile").write_text(
        "ARG APP_VERSION=dev\nARG APP_REVISION=unknown\nFROM scratch\nCOPY app.txt /\n"
    )
    (tmp_path / "app.txt").write_text("hi\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "remote",
            "add",
            "origin",
            "https://bob:s3cr3t@example.com/x.git",
        ],
        check=True,
    )
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "x",
        ],
        check=True,
    )
    (tmp_path / "pyproject.toml").write_text('[tool.shipit]\nname = "demo"\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def head(path: Path) -> str:
    """The full HEAD commit of a work tree."""
    return subprocess.run(
        ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def run_shipit(
    *args: str,
    env: dict[str, str] | None = None,
    input: str | None = None,
    cwd: Path = REPO_ROOT,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (`python -m shipit`), as a user would."""
    import sys

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "shipit", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def sample_image(python_image: str, docker_api: Any) -> Iterator[dict[str, Any]]:
    """The sample app built once per session by `shipit build --json --version 1.2.3`."""
    import json

    name = f"hello-flask-it-{uuid.uuid4().hex[:6]}"
    result = run_shipit(
        "build",
        "--json",
        "--name",
        name,
        "--version",
        "1.2.3",
        "--build-arg",
        f"PYTHON_IMAGE={python_image}",
        # Session-scoped: the per-test environment does not apply, so say what it would.
        env={"CI": "", "SHIPIT_CACHE_STAGE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    data["stderr"] = result.stderr
    try:
        yield data
    finally:
        for ref in [*data["tags"], f"{name}:buildcache"]:
            with contextlib.suppress(Exception):
                docker_api.remove_image(ref, force=True)
