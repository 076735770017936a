"""`shipit login`/`push` against real registries: a basic-auth registry, and ECR through moto.

Every pushed tag is checked by an independent client (skopeo and the registry's HTTP API).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_shipit
from tests.support import missing_binaries
from tests.support.moto_server import moto_server_missing, running_moto_server
from tests.support.registry import (
    Registry,
    ecr_environment_ready,
    ecr_setup,
    running_ecr_registry,
    running_registry,
    skopeo_digest,
)

pytestmark = pytest.mark.integration

USER, PASSWORD = "ci-user", "s3cret-Passw0rd-for-tests"


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Registry]:
    reason = missing_binaries("docker-registry", "htpasswd", "skopeo")
    if reason:
        pytest.skip(reason)
    with running_registry(tmp_path / "registry", username=USER, password=PASSWORD) as registry:
        yield registry


def _forget(docker_api: Any, references: list[str]) -> None:
    """Drop the local registry-qualified tags a push created (only the first tag is local)."""
    for ref in references:
        with contextlib.suppress(Exception):
            docker_api.remove_image(ref)


def test_push_to_basic_auth_registry_lands_every_tag(
    sample_image: dict[str, Any], auth_registry: Registry, tmp_path: Path, docker_api: Any
) -> None:
    name = sample_image["name"]
    env = {"SHIPIT_REGISTRY_USERNAME": USER, "SHIPIT_REGISTRY_PASSWORD": PASSWORD}
    args = ["push", "--registry", auth_registry.address, "--name", name, "--version", "1.2.3"]
    result = run_shipit(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    pushed = json.loads(result.stdout)["pushed"]
    tags = [t.split(":", 1)[1] for t in sample_image["tags"]]
    assert [p["reference"] for p in pushed] == [f"{auth_registry.address}/{name}:{t}" for t in tags]
    digests = {p["digest"] for p in pushed}
    assert len(digests) == 1
    for tag in tags:
        # Independent checks: the registry's own API and skopeo.
        assert auth_registry.manifest_digest(name, tag) in digests
        assert (
            skopeo_digest(f"{auth_registry.address}/{name}:{tag}", creds=f"{USER}:{PASSWORD}")
            in digests
        )
    _forget(docker_api, [p["reference"] for p in pushed])

    # A second run is an idempotent success, and the release tag is reported up to date.
    again = run_shipit(*args, "--json", env=env)
    assert again.returncode == 0, again.stderr
    statuses = {
        p["reference"].rsplit(":", 1)[1]: p["status"] for p in json.loads(again.stdout)["pushed"]
    }
    assert statuses["1.2.3"] == "unchanged"
    assert {p["digest"] for p in json.loads(again.stdout)["pushed"]} == digests
    _forget(docker_api, [p["reference"] for p in json.loads(again.stdout)["pushed"]])


def test_login_then_plain_docker_pull_runs_the_image(
    sample_image: dict[str, Any], auth_registry: Registry, tmp_path: Path, engine_cleanup: Any
) -> None:
    name = sample_image["name"]
    docker_config = tmp_path / "docker-config"
    env = {"DOCKER_CONFIG": str(docker_config)}
    login = run_shipit(
        "login",
        "--registry",
        auth_registry.address,
        "--username",
        USER,
        "--password-stdin",
        env=env,
        input=PASSWORD + "\n",
    )
    assert login.returncode == 0, login.stderr
    assert PASSWORD not in login.stdout + login.stderr
    assert (docker_config / "config.json").stat().st_mode & 0o077 == 0
    push = run_shipit("push", "--registry", auth_registry.address, "--name", name, env=env)
    assert push.returncode == 0, push.stderr
    ref = f"{auth_registry.address}/{name}:latest"
    assert f"{ref}@sha256:" in push.stdout
    subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)
    docker_env = {**os.environ, "DOCKER_CONFIG": str(docker_config)}
    pulled = subprocess.run(["docker", "pull", ref], capture_output=True, text=True, env=docker_env)
    assert pulled.returncode == 0, pulled.stderr
    engine_cleanup.images.append(ref)
    run = subprocess.run(
        ["docker", "run", "-d", "-p", "127.0.0.1::5000", ref],
        capture_output=True,
        text=True,
        check=True,
    )
    container = run.stdout.strip()
    engine_cleanup.containers.append(container)
    port = (
        subprocess.run(
            ["docker", "port", container, "5000/tcp"], capture_output=True, text=True, check=True
        )
        .stdout.split(":")[-1]
        .strip()
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                assert r.status == 200
                break
        except OSError:
            assert time.monotonic() < deadline, "pulled image never served /health"
            time.sleep(0.3)


def test_wrong_password_exits_3_without_leaking(
    sample_image: dict[str, Any], auth_registry: Registry
) -> None:
    env = {"SHIPIT_REGISTRY_USERNAME": USER, "SHIPIT_REGISTRY_PASSWORD": "wrong-Passw0rd-xyz"}
    result = run_shipit(
        "push",
        "--registry",
        auth_registry.address,
        "--name",
        sample_image["name"],
        "--retries",
        "1",
        env=env,
    )
    assert result.returncode == 3, result.stderr
    assert "wrong-Passw0rd-xyz" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_registry_exits_6(sample_image: dict[str, Any]) -> None:
    from tests.support.ports import free_port

    result = run_shipit(
        "push",
        "--registry",
        f"127.0.0.1:{free_port()}",
        "--name",
        sample_image["name"],
        "--retries",
        "2",
        "--retry-timeout",
        "5",
    )
    assert result.returncode == 6, result.stderr
    assert "Traceback" not in result.stderr


def test_push_of_unbuilt_image_exits_2(auth_registry: Registry, docker_api: Any) -> None:
    result = run_shipit("push", "--registry", auth_registry.address, "--name", "never-built-image")
    assert result.returncode == 2
    assert "run 'shipit build'" in result.stderr


# ---------------------------------------------------------------- ECR through moto


@pytest.fixture
def ecr_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], Registry]]:
    reason = ecr_environment_ready() or moto_server_missing() or missing_binaries("skopeo")
    if reason:
        pytest.skip(f"ECR end-to-end environment not ready: {reason}")
    setup = ecr_setup()
    assert setup is not None
    with (
        running_moto_server() as moto,
        running_ecr_registry(tmp_path / "ecr-registry", setup.tls_dir, setup.host) as registry,
    ):
        yield moto.env(), registry


def test_push_to_ecr_creates_repository_and_lands_every_tag(
    sample_image: dict[str, Any], ecr_env: tuple[dict[str, str], Registry], docker_api: Any
) -> None:
    import boto3

    env, registry = ecr_env
    name = sample_image["name"]
    args = ["push", "--registry", "ecr", "--name", name, "--version", "1.2.3", "--json"]
    result = run_shipit(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert "123456789012-auth-token" not in result.stdout + result.stderr
    pushed = json.loads(result.stdout)["pushed"]
    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    tags = [t.split(":", 1)[1] for t in sample_image["tags"]]
    assert [p["reference"] for p in pushed] == [f"{host}/{name}:{t}" for t in tags]
    assert {p["registry"] for p in pushed} == {"ecr"}
    ecr = boto3.client(
        "ecr",
        region_name="us-east-1",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    assert repo["encryptionConfiguration"]["encryptionType"] == "AES256"
    assert repo["imageTagMutability"] == "MUTABLE"
    for p in pushed:
        digest = skopeo_digest(p["reference"], creds=registry.creds)
        assert digest == p["digest"]
    # Second run: idempotent success, the repository is reused.
    again = run_shipit(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert "exists" in again.stderr
    _forget(docker_api, [p["reference"] for p in pushed])


def test_ecr_no_create_repo_refuses_missing_repository(
    sample_image: dict[str, Any], ecr_env: tuple[dict[str, str], Registry]
) -> None:
    env, _ = ecr_env
    result = run_shipit(
        "push", "--registry", "ecr", "--name", sample_image["name"], "--no-create-repo", env=env
    )
    assert result.returncode == 6, result.stderr
    assert "does not exist" in result.stderr


def test_ecr_login_records_docker_config(
    ecr_env: tuple[dict[str, str], Registry], tmp_path: Path
) -> None:
    env, _ = ecr_env
    config_dir = tmp_path / "cfg"
    result = run_shipit(
        "login", "--registry", "ecr", "--json", env={**env, "DOCKER_CONFIG": str(config_dir)}
    )
    assert result.returncode == 0, result.stderr
    assert (
        json.loads(result.stdout)["logged_in"][0]["server"]
        == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    )
    config = json.loads((config_dir / "config.json").read_text())
    assert "123456789012.dkr.ecr.us-east-1.amazonaws.com" in config["auths"]
    assert "123456789012-auth-token" not in result.stdout + result.stderr


def test_release_smoke_failure_pushes_nothing(
    auth_registry: Registry, busybox_image: str, tmp_path: Path, engine_cleanup: Any
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f'FROM {busybox_image}\nEXPOSE 8080\nCMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n'
    )
    env = {"SHIPIT_REGISTRY_USERNAME": USER, "SHIPIT_REGISTRY_PASSWORD": PASSWORD}
    name = "shipit-it-unhealthy"
    engine_cleanup.images.append(f"{name}:latest")
    result = run_shipit(
        "release",
        str(tmp_path),
        "--name",
        name,
        "--registry",
        auth_registry.address,
        "--smoke",
        "--smoke-timeout",
        "5",
        "--no-latest",
        "--tag",
        "candidate",
        env=env,
    )
    engine_cleanup.images.append(f"{name}:candidate")
    assert result.returncode == 7, result.stderr
    assert "Traceback" not in result.stderr
    assert auth_registry.tags(name) == []
