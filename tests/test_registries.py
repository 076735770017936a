"""Registry destinations, their references and credentials, and `shipit login` (no network).

Pushes go through the FakeAPI with FakeRegistries standing in for the registries; ECR runs
against moto's in-process `mock_aws`. Exit codes and messages are asserted through Typer's
CliRunner, the way a user sees them.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from shipit.adapters import dockerconfig
from shipit.cli import app
from shipit.errors import AuthError, UsageError
from shipit.model import Auth
from shipit.output.reporter import OutputMode, Reporter
from shipit.reference import RegistryTarget
from shipit.services.registries import (
    DockerHub,
    Ecr,
    GenericRegistry,
    RegistryOptions,
    make_destinations,
    parse_kind,
    resolve_credentials,
)
from tests.fakes import (
    AWS_SECRET,
    CredentialHelper,
    FakeAPI,
    FakeRegistries,
    add_built_image,
    isolate_aws,
)

runner = CliRunner()

HUB_KEY = "https://index.docker.io/v1/"
ACCOUNT = "123456789012"  # moto's default account
ECR_HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
ECR_TOKEN = f"{ACCOUNT}-auth-token"  # the password moto's GetAuthorizationToken hands out
HUB_SECRET = "dckr_pat_HUBsecretTOKEN-0123456789"
REG_SECRET = "reg-Secret-Passw0rd-9876543210"


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def registries(fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> FakeRegistries:
    return FakeRegistries(fake_api).install(monkeypatch)


@pytest.fixture
def built(project: Path, fake_api: FakeAPI) -> list[str]:
    """The tags `shipit build` left in the engine (demo:latest, demo:sha-XXXXXXX)."""
    _, references = add_built_image(fake_api, project)
    return [ref.split(":", 1)[1] for ref in references]


@pytest.fixture
def docker_config() -> Path:
    """$DOCKER_CONFIG/config.json (conftest points DOCKER_CONFIG at an empty temp home)."""
    return Path(os.environ["DOCKER_CONFIG"]) / "config.json"


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CredentialHelper:
    """`docker-credential-fake` on PATH."""
    found = CredentialHelper(tmp_path / "helper-bin")
    monkeypatch.setenv("PATH", f"{found.dir}{os.pathsep}{os.environ['PATH']}")
    return found


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """moto's ECR (in process) with dummy credentials; yields a boto3 ECR client."""
    isolate_aws(monkeypatch, tmp_path)
    with mock_aws():
        yield boto3.client("ecr", region_name="us-east-1")


def write_config(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def b64(user: str, secret: str) -> str:
    return base64.b64encode(f"{user}:{secret}".encode()).decode()


def push_auths(api: FakeAPI) -> list[dict[str, str] | None]:
    return [kwargs["auth_config"] for name, _, kwargs in api.calls if name == "push"]


def pushed_json(result: Any) -> list[dict[str, str]]:
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout)["pushed"])


def reporter() -> Reporter:
    return Reporter(OutputMode())


# ---------------------------------------------------------------- parsing registry values


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ecr", "ecr"),
        ("ECR", "ecr"),
        ("dockerhub", "dockerhub"),
        ("docker.io", "dockerhub"),
        ("hub", "dockerhub"),
        ("localhost:5000", RegistryTarget("localhost:5000")),
        ("localhost", RegistryTarget("localhost")),
        ("ghcr.io/acme", RegistryTarget("ghcr.io", "acme")),
        (
            "registry.example.com:8443/team/sub",
            RegistryTarget("registry.example.com:8443", "team/sub"),
        ),
        ("127.0.0.1:5000/", RegistryTarget("127.0.0.1:5000")),
    ],
)
def test_parse_kind(value: str, expected: object) -> None:
    assert parse_kind(value) == expected


@pytest.mark.parametrize("value", ["foo", "quay", "ghcr.io/Acme", "bad host:5000", "http://x.io"])
def test_parse_kind_rejects_unknown_values(value: str) -> None:
    with pytest.raises(UsageError):
        parse_kind(value)


def test_make_destinations_kinds_and_duplicates() -> None:
    options = RegistryOptions(registries=("localhost:5000", "dockerhub", "localhost:5000", "hub"))
    destinations = make_destinations(options, {})
    assert [type(d) for d in destinations] == [GenericRegistry, DockerHub]
    with pytest.raises(UsageError, match="no registry"):
        make_destinations(RegistryOptions(), {})


def test_every_registry_value_is_validated_before_ecr_is_built() -> None:
    def boom(options: RegistryOptions, env: Any) -> Any:
        raise AssertionError("ECR contacted before all values were validated")

    with pytest.raises(UsageError, match="unknown registry 'foo'"):
        make_destinations(RegistryOptions(registries=("ecr", "foo")), {}, ecr_factory=boom)


# ---------------------------------------------------------------- references per kind


def test_generic_registry_references(project: Path, built: list[str], registries: Any) -> None:
    result = runner.invoke(app, ["push", "--registry", "localhost:5000", "--json"])
    pushed = pushed_json(result)
    assert [p["reference"] for p in pushed] == [f"localhost:5000/demo:{t}" for t in built]
    assert {p["registry"] for p in pushed} == {"localhost:5000"}
    assert [p["status"] for p in pushed] == ["pushed", "tagged"]
    # One engine push; the second tag is a manifest copy through the registry API.
    assert [c[1] for c in registries.api.calls if c[0] == "push"] == [("localhost:5000/demo",)]
    assert registries.tags("localhost:5000/demo") == {t: pushed[0]["digest"] for t in built}


def test_registry_with_namespace_path(project: Path, built: list[str], registries: Any) -> None:
    pushed = pushed_json(runner.invoke(app, ["push", "--registry", "ghcr.io/acme", "--json"]))
    assert [p["reference"] for p in pushed] == [f"ghcr.io/acme/demo:{t}" for t in built]
    assert pushed[0]["registry"] == "ghcr.io/acme"


def test_repository_override(project: Path, built: list[str], registries: Any) -> None:
    result = runner.invoke(
        app, ["push", "--registry", "localhost:5000", "--repository", "other", "--json"]
    )
    pushed = pushed_json(result)
    assert [p["reference"] for p in pushed] == [f"localhost:5000/other:{t}" for t in built]
    # The local image is tagged for the other repository; its own tags stay as they are.
    image_id = next(iter(registries.api.images))
    tagged = [args for name, args, _ in registries.api.calls if name == "tag"]
    assert tagged == [(image_id, "localhost:5000/other", built[0])]
    assert all(f"demo:{t}" in registries.api.images[image_id]["RepoTags"] for t in built)


def test_docker_hub_references(
    project: Path, built: list[str], registries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKERHUB_USERNAME", "bob")
    monkeypatch.setenv("DOCKERHUB_TOKEN", HUB_SECRET)
    pushed = pushed_json(runner.invoke(app, ["push", "--registry", "dockerhub", "--json"]))
    assert [p["reference"] for p in pushed] == [f"docker.io/bob/demo:{t}" for t in built]
    assert pushed[0]["registry"] == "dockerhub"
    other = pushed_json(
        runner.invoke(
            app, ["push", "-r", "dockerhub", "--namespace", "acme", "--repository", "web", "--json"]
        )
    )
    assert [p["reference"] for p in other] == [f"docker.io/acme/web:{t}" for t in built]


def test_ecr_references_and_repository_created(
    aws: Any, project: Path, built: list[str], fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeRegistries(fake_api, ecr=aws).install(monkeypatch)
    result = runner.invoke(app, ["push", "--registry", "ecr", "--json"])
    pushed = pushed_json(result)
    assert [p["reference"] for p in pushed] == [f"{ECR_HOST}/demo:{t}" for t in built]
    assert [p["status"] for p in pushed] == ["pushed", "tagged"]
    assert pushed[0]["registry"] == "ecr"
    repo = aws.describe_repositories(repositoryNames=["demo"])["repositories"][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["imageTagMutability"] == "MUTABLE"
    assert "ECR repository demo: created" in result.stderr
    # Every tag landed in ECR on one digest (the extra tag through PutImage, not a push).
    details = aws.describe_images(repositoryName="demo")["imageDetails"]
    assert len(details) == 1
    assert sorted(details[0]["imageTags"]) == sorted(built)
    assert details[0]["imageDigest"] == pushed[0]["digest"]
    assert [c[1] for c in fake_api.calls if c[0] == "push"] == [(f"{ECR_HOST}/demo",)]
    assert push_auths(fake_api) == [
        {"username": "AWS", "password": ECR_TOKEN, "serveraddress": ECR_HOST}
    ]
    # A second run finds the repository instead of creating it.
    again = runner.invoke(app, ["push", "--registry", "ecr", "--json"])
    assert again.exit_code == 0, again.output
    assert "ECR repository demo: exists" in again.stderr


def test_ecr_cross_account_registry_id(
    aws: Any, project: Path, built: list[str], fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeRegistries(fake_api, ecr=aws).install(monkeypatch)
    result = runner.invoke(
        app, ["push", "--registry", "ecr", "--registry-id", "210987654321", "--json"]
    )
    pushed = pushed_json(result)
    host = "210987654321.dkr.ecr.us-east-1.amazonaws.com"
    assert [p["reference"] for p in pushed] == [f"{host}/demo:{t}" for t in built]
    assert push_auths(fake_api)[0] == {
        "username": "AWS",
        "password": "210987654321-auth-token",
        "serveraddress": host,
    }


def test_ecr_region_option(
    aws: Any, project: Path, built: list[str], fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeRegistries(fake_api).install(monkeypatch)
    result = runner.invoke(app, ["push", "-r", "ecr", "--region", "eu-west-1", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/demo:latest" in result.stdout


# ---------------------------------------------------------------- Docker Hub namespace


@pytest.mark.parametrize(
    ("namespace", "env", "username", "expected"),
    [
        ("flag", {"DOCKERHUB_NAMESPACE": "envns", "DOCKERHUB_USERNAME": "envuser"}, "cli", "flag"),
        (None, {"DOCKERHUB_NAMESPACE": "envns", "DOCKERHUB_USERNAME": "envuser"}, "cli", "envns"),
        (None, {"DOCKERHUB_USERNAME": "envuser"}, "cli", "envuser"),
        (None, {}, "cliuser", "cliuser"),
        ("Acme", {}, None, "acme"),
    ],
)
def test_docker_hub_namespace_precedence(
    namespace: str | None, env: dict[str, str], username: str | None, expected: str
) -> None:
    hub = DockerHub(options=RegistryOptions(namespace=namespace, username=username), env=env)
    assert hub.namespace() == expected
    assert hub.repository("demo") == f"docker.io/{expected}/demo"


@pytest.mark.parametrize("namespace", ["acme/team", "-acme", "a b", "bob@example.com", "ac..me"])
def test_invalid_docker_hub_namespace_exits_2(
    project: Path,
    built: list[str],
    registries: Any,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKERHUB_USERNAME", "bob")
    monkeypatch.setenv("DOCKERHUB_TOKEN", HUB_SECRET)
    result = runner.invoke(app, ["push", "--registry", "dockerhub", "--namespace", namespace])
    assert result.exit_code == 2, result.output
    assert "invalid Docker Hub namespace" in result.stderr
    assert "Traceback" not in result.output
    assert not [c for c in registries.api.calls if c[0] in {"push", "tag"}]


def test_missing_docker_hub_namespace_exits_2(
    project: Path, built: list[str], registries: Any, docker_config: Path
) -> None:
    # Credentials from an earlier `docker login`, but nothing that names a namespace.
    write_config(docker_config, {"auths": {HUB_KEY: {"auth": b64("bob", HUB_SECRET)}}})
    result = runner.invoke(app, ["push", "--registry", "dockerhub"])
    assert result.exit_code == 2, result.output
    assert "no Docker Hub namespace: pass --namespace or set DOCKERHUB_NAMESPACE" in result.stderr
    assert not [c for c in registries.api.calls if c[0] in {"push", "tag"}]


def test_docker_io_with_a_path_is_docker_hub(
    project: Path, built: list[str], registries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--registry docker.io/acme` means Docker Hub, namespace acme: DOCKERHUB_* credentials apply.
    monkeypatch.setenv("DOCKERHUB_USERNAME", "bob")
    monkeypatch.setenv("DOCKERHUB_TOKEN", HUB_SECRET)
    pushed = pushed_json(runner.invoke(app, ["push", "-r", "docker.io/acme", "--json"]))
    assert [p["reference"] for p in pushed] == [f"docker.io/acme/demo:{t}" for t in built]
    assert push_auths(registries.api) == [
        {"username": "bob", "password": HUB_SECRET, "serveraddress": HUB_KEY}
    ]
    (hub,) = make_destinations(RegistryOptions(registries=("index.docker.io/acme",)), {})
    assert isinstance(hub, DockerHub) and hub.repository("demo") == "docker.io/acme/demo"


def test_explicit_invalid_namespace_is_refused_before_ecr_is_contacted(
    aws: Any, project: Path, built: list[str], registries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKERHUB_USERNAME", "bob")
    monkeypatch.setenv("DOCKERHUB_TOKEN", HUB_SECRET)
    result = runner.invoke(app, ["push", "-r", "ecr", "-r", "dockerhub", "--namespace", "a/b"])
    assert result.exit_code == 2, result.output
    assert "invalid Docker Hub namespace 'a/b'" in result.stderr
    assert aws.describe_repositories()["repositories"] == []
    assert not registries.api.calls


def test_missing_namespace_is_found_before_ecr_creates_a_repository(
    aws: Any, project: Path, built: list[str], registries: Any, docker_config: Path
) -> None:
    write_config(docker_config, {"auths": {HUB_KEY: {"auth": b64("bob", HUB_SECRET)}}})
    result = runner.invoke(app, ["push", "-r", "ecr", "-r", "dockerhub"])
    assert result.exit_code == 2, result.output
    assert "no Docker Hub namespace" in result.stderr
    assert aws.describe_repositories()["repositories"] == []


@pytest.mark.parametrize("repository", ["Bad", "a//b", "-x", "web app"])
def test_invalid_repository_exits_2_before_the_engine(
    project: Path, built: list[str], registries: Any, repository: str
) -> None:
    for registry in ("localhost:5000", "dockerhub"):
        result = runner.invoke(
            app, ["push", "-r", registry, "--namespace", "acme", "--repository", repository]
        )
        assert result.exit_code == 2, result.output
        assert f"invalid repository '{repository}'" in result.stderr
        assert "Traceback" not in result.output
    assert not registries.api.calls


# ---------------------------------------------------------------- Docker Hub credentials


def test_docker_hub_env_credentials(
    project: Path, built: list[str], registries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKERHUB_USERNAME", "bob")
    monkeypatch.setenv("DOCKERHUB_TOKEN", HUB_SECRET)
    result = runner.invoke(app, ["push", "--registry", "dockerhub"])
    assert result.exit_code == 0, result.output
    assert push_auths(registries.api) == [
        {"username": "bob", "password": HUB_SECRET, "serveraddress": HUB_KEY}
    ]
    # The registry API client (release checks, tag copies) gets the same credentials.
    assert {(a.username, a.password) for a in registries.client_auths} == {("bob", HUB_SECRET)}


def test_docker_hub_password_stdin(project: Path, built: list[str], registries: Any) -> None:
    result = runner.invoke(
        app,
        ["push", "-r", "dockerhub", "--username", "alice", "--password-stdin"],
        input=HUB_SECRET + "\n",
    )
    assert result.exit_code == 0, result.output
    assert push_auths(registries.api) == [
        {"username": "alice", "password": HUB_SECRET, "serveraddress": HUB_KEY}
    ]
    # --username is the namespace of last resort.
    assert f"docker.io/alice/demo:{built[0]}" in result.stdout


def test_password_stdin_beats_environment(
    project: Path, built: list[str], registries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKERHUB_USERNAME", "bob")
    monkeypatch.setenv("DOCKERHUB_TOKEN", "env-token-not-used")
    result = runner.invoke(
        app,
        ["push", "-r", "dockerhub", "--username", "alice", "--password-stdin"],
        input=HUB_SECRET + "\r\n",
    )
    assert result.exit_code == 0, result.output
    auth = push_auths(registries.api)[0]
    assert auth is not None
    assert (auth["username"], auth["password"]) == ("alice", HUB_SECRET)
    # DOCKERHUB_USERNAME still names the namespace when --namespace is not given.
    assert f"docker.io/bob/demo:{built[0]}" in result.stdout


@pytest.mark.parametrize(
    "key", [HUB_KEY, "docker.io", "index.docker.io", "https://index.docker.io/v1"]
)
def test_docker_hub_existing_login_in_docker_config(
    project: Path, built: list[str], registries: Any, docker_config: Path, key: str
) -> None:
    write_config(docker_config, {"auths": {key: {"auth": b64("carol", HUB_SECRET)}}})
    result = runner.invoke(app, ["push", "-r", "dockerhub", "--namespace", "carol"])
    assert result.exit_code == 0, result.output
    assert push_auths(registries.api) == [
        {"username": "carol", "password": HUB_SECRET, "serveraddress": HUB_KEY}
    ]


def test_docker_hub_login_from_credential_helper(
    project: Path,
    built: list[str],
    registries: Any,
    docker_config: Path,
    helper: CredentialHelper,
) -> None:
    write_config(docker_config, {"auths": {HUB_KEY: {}}, "credsStore": "fake"})
    helper.set(HUB_KEY, "dave", HUB_SECRET)
    result = runner.invoke(app, ["push", "-r", "dockerhub", "--namespace", "dave"])
    assert result.exit_code == 0, result.output
    assert push_auths(registries.api) == [
        {"username": "dave", "password": HUB_SECRET, "serveraddress": HUB_KEY}
    ]
    assert [c["argv"] for c in helper.calls()] == [["get"]]
    assert helper.calls()[0]["stdin"].strip() == HUB_KEY


def test_docker_hub_missing_credentials_exit_3(
    project: Path, built: list[str], registries: Any
) -> None:
    result = runner.invoke(app, ["push", "-r", "dockerhub", "--namespace", "acme"])
    assert result.exit_code == 3, result.output
    assert "no Docker Hub credentials" in result.stderr
    assert "DOCKERHUB_TOKEN" in result.stderr
    assert "Traceback" not in result.output
    assert not [c for c in registries.api.calls if c[0] in {"push", "tag"}]


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"DOCKERHUB_USERNAME": "bob"}, "DOCKERHUB_TOKEN is not set"),
        ({"DOCKERHUB_TOKEN": HUB_SECRET}, "DOCKERHUB_USERNAME is not set"),
    ],
)
def test_docker_hub_half_a_credential_pair(
    project: Path,
    built: list[str],
    registries: Any,
    env: dict[str, str],
    missing: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["push", "-r", "dockerhub", "--namespace", "acme"])
    assert result.exit_code == 3, result.output
    assert missing in result.stderr
    assert "DOCKERHUB_USERNAME/DOCKERHUB_TOKEN go together" in result.stderr
    assert HUB_SECRET not in result.output


def test_config_username_does_not_block_env_credentials(
    project: Path, built: list[str], registries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # [tool.shipit.registry] username is a default for --username, not half a credential.
    with (project / "pyproject.toml").open("a") as fh:
        fh.write('[tool.shipit.registry]\nusername = "cfguser"\n')
    monkeypatch.setenv("DOCKERHUB_USERNAME", "bob")
    monkeypatch.setenv("DOCKERHUB_TOKEN", HUB_SECRET)
    monkeypatch.setenv("SHIPIT_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", REG_SECRET)
    result = runner.invoke(app, ["push", "-r", "dockerhub", "-r", "localhost:5000"])
    assert result.exit_code == 0, result.output
    assert sorted((a or {}).get("username", "") for a in push_auths(registries.api)) == [
        "bob",
        "ci",
    ]


def test_username_alone_falls_back_to_docker_config(
    project: Path, built: list[str], registries: Any, docker_config: Path
) -> None:
    # --username without --password-stdin only names the Docker Hub namespace.
    write_config(docker_config, {"auths": {HUB_KEY: {"auth": b64("bob", HUB_SECRET)}}})
    result = runner.invoke(app, ["push", "-r", "dockerhub", "--username", "bob"])
    assert result.exit_code == 0, result.output
    assert f"docker.io/bob/demo:{built[0]}@" in result.stdout
    assert push_auths(registries.api)[0] == {
        "username": "bob",
        "password": HUB_SECRET,
        "serveraddress": HUB_KEY,
    }


def test_config_username_with_password_stdin(
    project: Path, built: list[str], registries: Any
) -> None:
    with (project / "pyproject.toml").open("a") as fh:
        fh.write('[tool.shipit.registry]\nusername = "cfguser"\n')
    result = runner.invoke(
        app, ["push", "-r", "localhost:5000", "--password-stdin"], input=REG_SECRET + "\n"
    )
    assert result.exit_code == 0, result.output
    assert push_auths(registries.api)[0] == {
        "username": "cfguser",
        "password": REG_SECRET,
        "serveraddress": "localhost:5000",
    }


# ---------------------------------------------------------------- generic registry credentials


def test_generic_env_credentials(
    project: Path, built: list[str], registries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPIT_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", REG_SECRET)
    result = runner.invoke(app, ["push", "-r", "localhost:5000"])
    assert result.exit_code == 0, result.output
    assert push_auths(registries.api) == [
        {"username": "ci", "password": REG_SECRET, "serveraddress": "localhost:5000"}
    ]


def test_generic_password_stdin(project: Path, built: list[str], registries: Any) -> None:
    result = runner.invoke(
        app,
        ["push", "-r", "ghcr.io/acme", "-u", "octocat", "--password-stdin"],
        input=REG_SECRET + "\n",
    )
    assert result.exit_code == 0, result.output
    assert push_auths(registries.api) == [
        {"username": "octocat", "password": REG_SECRET, "serveraddress": "ghcr.io"}
    ]


@pytest.mark.parametrize(
    "key", ["localhost:5000", "https://localhost:5000", "http://localhost:5000"]
)
def test_generic_docker_config_login(
    project: Path, built: list[str], registries: Any, docker_config: Path, key: str
) -> None:
    write_config(docker_config, {"auths": {key: {"auth": b64("erin", REG_SECRET)}}})
    result = runner.invoke(app, ["push", "-r", "localhost:5000"])
    assert result.exit_code == 0, result.output
    assert push_auths(registries.api) == [
        {"username": "erin", "password": REG_SECRET, "serveraddress": "localhost:5000"}
    ]


def test_generic_credential_helper_per_registry(
    project: Path,
    built: list[str],
    registries: Any,
    docker_config: Path,
    helper: CredentialHelper,
) -> None:
    write_config(docker_config, {"credHelpers": {"localhost:5000": "fake"}})
    helper.set("localhost:5000", "frank", REG_SECRET)
    result = runner.invoke(app, ["push", "-r", "localhost:5000"])
    assert result.exit_code == 0, result.output
    assert push_auths(registries.api) == [
        {"username": "frank", "password": REG_SECRET, "serveraddress": "localhost:5000"}
    ]


def test_generic_anonymous_push_sends_no_auth(
    project: Path, built: list[str], registries: Any
) -> None:
    result = runner.invoke(app, ["push", "-r", "localhost:5000"])
    assert result.exit_code == 0, result.output
    assert push_auths(registries.api) == [None]
    inspected = [
        kw["auth_config"] for n, _, kw in registries.api.calls if n == "inspect_distribution"
    ]
    assert inspected == [None, None]
    assert registries.client_auths == [None]


def test_generic_half_a_credential_pair(
    project: Path, built: list[str], registries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", REG_SECRET)
    result = runner.invoke(app, ["push", "-r", "localhost:5000"])
    assert result.exit_code == 3, result.output
    assert "SHIPIT_REGISTRY_USERNAME is not set" in result.stderr
    assert REG_SECRET not in result.output


def test_resolve_credentials_order(docker_config: Path) -> None:
    write_config(docker_config, {"auths": {"r.io": {"auth": b64("cfg", "cfg-secret")}}})
    env = {"DOCKER_CONFIG": str(docker_config.parent)}
    names = ("U", "P")

    def resolve(**kw: Any) -> Auth | None:
        args: dict[str, Any] = {
            "username": None,
            "password": None,
            "env_user": None,
            "env_secret": None,
        }
        args.update(kw)
        return resolve_credentials("r.io", env_names=names, env=env, **args)

    assert resolve(username="cli", password="p1", env_user="e", env_secret="p2") == Auth(
        "cli", "p1", "r.io"
    )
    assert resolve(env_user="e", env_secret="p2") == Auth("e", "p2", "r.io")
    assert resolve() == Auth("cfg", "cfg-secret", "r.io")
    assert (
        resolve_credentials(
            "other.io",
            username=None,
            password=None,
            env_user=None,
            env_secret=None,
            env_names=names,
            env=env,
        )
        is None
    )
    with pytest.raises(UsageError, match="--password-stdin needs --username"):
        resolve(password="p1")
    with pytest.raises(AuthError, match="P is not set"):
        resolve(env_user="e")


# ---------------------------------------------------------------- secrets never appear


def _hub_env(monkeypatch: pytest.MonkeyPatch, **_: Any) -> tuple[list[str], str | None, str]:
    monkeypatch.setenv("DOCKERHUB_USERNAME", "bob")
    monkeypatch.setenv("DOCKERHUB_TOKEN", HUB_SECRET)
    return ["-r", "dockerhub"], None, HUB_SECRET


def _hub_stdin(monkeypatch: pytest.MonkeyPatch, **_: Any) -> tuple[list[str], str | None, str]:
    return ["-r", "dockerhub", "-u", "bob", "--password-stdin"], HUB_SECRET + "\n", HUB_SECRET


def _hub_config(docker_config: Path, **_: Any) -> tuple[list[str], str | None, str]:
    write_config(docker_config, {"auths": {HUB_KEY: {"auth": b64("bob", HUB_SECRET)}}})
    return ["-r", "dockerhub", "--namespace", "bob"], None, HUB_SECRET


def _hub_helper(
    docker_config: Path, helper: CredentialHelper, **_: Any
) -> tuple[list[str], str | None, str]:
    write_config(docker_config, {"credsStore": "fake"})
    helper.set(HUB_KEY, "bob", HUB_SECRET)
    return ["-r", "dockerhub", "--namespace", "bob"], None, HUB_SECRET


def _reg_env(monkeypatch: pytest.MonkeyPatch, **_: Any) -> tuple[list[str], str | None, str]:
    monkeypatch.setenv("SHIPIT_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", REG_SECRET)
    return ["-r", "localhost:5000"], None, REG_SECRET


def _reg_stdin(**_: Any) -> tuple[list[str], str | None, str]:
    return ["-r", "localhost:5000", "-u", "ci", "--password-stdin"], REG_SECRET + "\n", REG_SECRET


def _reg_config(docker_config: Path, **_: Any) -> tuple[list[str], str | None, str]:
    write_config(docker_config, {"auths": {"localhost:5000": {"auth": b64("ci", REG_SECRET)}}})
    return ["-r", "localhost:5000"], None, REG_SECRET


def _reg_helper(
    docker_config: Path, helper: CredentialHelper, **_: Any
) -> tuple[list[str], str | None, str]:
    write_config(docker_config, {"credHelpers": {"localhost:5000": "fake"}})
    helper.set("localhost:5000", "ci", REG_SECRET)
    return ["-r", "localhost:5000"], None, REG_SECRET


CREDENTIAL_PATHS = {
    "hub-env": _hub_env,
    "hub-stdin": _hub_stdin,
    "hub-docker-config": _hub_config,
    "hub-helper": _hub_helper,
    "registry-env": _reg_env,
    "registry-stdin": _reg_stdin,
    "registry-docker-config": _reg_config,
    "registry-helper": _reg_helper,
}


@pytest.mark.parametrize("mode", [[], ["--verbose"], ["--json"]], ids=["plain", "verbose", "json"])
@pytest.mark.parametrize("path", sorted(CREDENTIAL_PATHS))
def test_secret_never_printed(
    project: Path,
    built: list[str],
    registries: Any,
    docker_config: Path,
    helper: CredentialHelper,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    mode: list[str],
) -> None:
    args, stdin, secret = CREDENTIAL_PATHS[path](
        monkeypatch=monkeypatch, docker_config=docker_config, helper=helper
    )
    result = runner.invoke(app, ["push", *args, *mode], input=stdin)
    assert result.exit_code == 0, result.output
    auths = push_auths(registries.api)
    assert auths and auths[0] is not None and auths[0]["password"] == secret  # it was used
    assert secret not in result.stdout
    assert secret not in result.stderr
    assert b64("bob", secret) not in result.output and b64("ci", secret) not in result.output
    # A push never records a login of its own.
    if path.endswith(("env", "stdin")):
        assert not docker_config.exists()


@pytest.mark.parametrize("mode", [[], ["--verbose"], ["--json"]], ids=["plain", "verbose", "json"])
def test_secret_echoed_by_the_registry_is_masked(
    project: Path,
    built: list[str],
    registries: Any,
    monkeypatch: pytest.MonkeyPatch,
    mode: list[str],
) -> None:
    monkeypatch.setenv("SHIPIT_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", REG_SECRET)
    message = f"unauthorized: credentials ci:{REG_SECRET} rejected"
    registries.api.push_errors[f"localhost:5000/demo:{built[0]}"] = [
        {"error": message, "errorDetail": {"message": message}}
    ]
    result = runner.invoke(app, ["push", "-r", "localhost:5000", *mode])
    assert result.exit_code == 3, result.output
    assert "the registry refused the credentials" in result.stderr
    assert "***" in result.stderr
    assert REG_SECRET not in result.output


def test_ecr_token_never_printed(
    aws: Any, project: Path, built: list[str], fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeRegistries(fake_api, ecr=aws).install(monkeypatch)
    for mode in ([], ["--verbose"], ["--json"]):
        result = runner.invoke(app, ["push", "-r", "ecr", *mode])
        assert result.exit_code == 0, result.output
        assert ECR_TOKEN not in result.output
        assert AWS_SECRET not in result.output
    assert push_auths(fake_api)[0] == {
        "username": "AWS",
        "password": ECR_TOKEN,
        "serveraddress": ECR_HOST,
    }


def test_reprs_hide_secrets() -> None:
    env = {"DOCKERHUB_TOKEN": HUB_SECRET, "SHIPIT_REGISTRY_PASSWORD": REG_SECRET}
    options = RegistryOptions(registries=("dockerhub",), username="bob", password=HUB_SECRET)
    auth = Auth("bob", HUB_SECRET, HUB_KEY)
    hub = DockerHub(options=options, env=env)
    generic = GenericRegistry(target=RegistryTarget("localhost:5000"), options=options, env=env)
    for thing in (auth, options, hub, generic):
        assert HUB_SECRET not in repr(thing)
        assert REG_SECRET not in repr(thing)
        assert HUB_SECRET not in str(thing)
    assert "bob" in repr(auth)


def test_ecr_destination_repr_hides_the_token() -> None:
    ecr = Ecr(registry=object(), options=RegistryOptions())  # type: ignore[arg-type]
    ecr._auth = Auth("AWS", ECR_TOKEN, ECR_HOST)
    assert ECR_TOKEN not in repr(ecr)


# ---------------------------------------------------------------- password options


def test_there_is_no_password_option(project: Path, built: list[str], registries: Any) -> None:
    for command in ("push", "login"):
        result = runner.invoke(
            app, [command, "-r", "localhost:5000", "-u", "ci", "--password", REG_SECRET]
        )
        assert result.exit_code == 2, result.output
        assert "No such option: --password" in result.output
    assert not registries.api.calls


@pytest.mark.parametrize("command", ["push", "login"])
def test_password_stdin_needs_username(
    project: Path, built: list[str], registries: Any, command: str
) -> None:
    result = runner.invoke(
        app, [command, "-r", "localhost:5000", "--password-stdin"], input=REG_SECRET + "\n"
    )
    assert result.exit_code == 2, result.output
    assert "--password-stdin needs --username" in result.stderr
    assert REG_SECRET not in result.output
    assert not [c for c in registries.api.calls if c[0] in {"push", "login"}]


def test_password_stdin_with_empty_stdin(project: Path, built: list[str], registries: Any) -> None:
    result = runner.invoke(
        app, ["push", "-r", "localhost:5000", "-u", "ci", "--password-stdin"], input=""
    )
    assert result.exit_code == 2, result.output
    assert "nothing was read from stdin" in result.stderr


# ---------------------------------------------------------------- shipit login


def test_login_records_plain_auth_entry(
    project: Path, fake_api: FakeAPI, docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPIT_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", REG_SECRET)
    result = runner.invoke(app, ["login", "-r", "localhost:5000", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "logged_in": [
            {
                "registry": "localhost:5000",
                "server": "localhost:5000",
                "stored_in": str(docker_config),
            }
        ]
    }
    config = json.loads(docker_config.read_text())
    assert config == {"auths": {"localhost:5000": {"auth": b64("ci", REG_SECRET)}}}
    assert stat.S_IMODE(docker_config.stat().st_mode) == 0o600
    logins = [kw for name, _, kw in fake_api.calls if name == "login"]
    assert logins == [{"username": "ci", "registry": "localhost:5000", "reauth": True}]
    assert fake_api.login_passwords == [REG_SECRET]
    assert REG_SECRET not in result.output
    # Only config.json is left behind (the temporary file of the atomic write is gone).
    assert sorted(p.name for p in docker_config.parent.iterdir()) == ["config.json"]


def test_login_docker_hub_with_password_stdin_keeps_other_entries(
    project: Path, fake_api: FakeAPI, docker_config: Path
) -> None:
    write_config(
        docker_config,
        {"auths": {"ghcr.io": {"auth": b64("x", "y")}}, "psFormat": "table {{.ID}}"},
    )
    result = runner.invoke(
        app, ["login", "-r", "dockerhub", "-u", "bob", "--password-stdin"], input=HUB_SECRET + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "logged in to docker.io as bob" in result.stderr
    config = json.loads(docker_config.read_text())
    assert config["auths"] == {
        "ghcr.io": {"auth": b64("x", "y")},
        HUB_KEY: {"auth": b64("bob", HUB_SECRET)},
    }
    assert config["psFormat"] == "table {{.ID}}"
    assert [kw["registry"] for n, _, kw in fake_api.calls if n == "login"] == [HUB_KEY]
    assert HUB_SECRET not in result.output


@pytest.mark.parametrize("style", ["credsStore", "credHelpers"])
def test_login_through_credential_helper(
    project: Path,
    fake_api: FakeAPI,
    docker_config: Path,
    helper: CredentialHelper,
    monkeypatch: pytest.MonkeyPatch,
    style: str,
) -> None:
    if style == "credsStore":
        write_config(docker_config, {"credsStore": "fake"})
    else:
        write_config(docker_config, {"credHelpers": {"localhost:5000": "fake"}})
    monkeypatch.setenv("SHIPIT_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", REG_SECRET)
    result = runner.invoke(app, ["login", "-r", "localhost:5000"])
    assert result.exit_code == 0, result.output
    assert "credential helper docker-credential-fake" in result.stderr
    stores = [c for c in helper.calls() if c["argv"][0] == "store"]
    assert len(stores) == 1
    assert stores[0]["argv"] == ["store"]  # the secret is never an argument
    assert json.loads(stores[0]["stdin"]) == {
        "ServerURL": "localhost:5000",
        "Username": "ci",
        "Secret": REG_SECRET,
    }
    assert helper.creds()["localhost:5000"] == ["ci", REG_SECRET]
    text = docker_config.read_text()
    assert REG_SECRET not in text and b64("ci", REG_SECRET) not in text
    assert json.loads(text)["auths"] == {"localhost:5000": {}}
    assert REG_SECRET not in result.output


def test_login_helper_store_failure_exits_3(
    project: Path,
    fake_api: FakeAPI,
    docker_config: Path,
    helper: CredentialHelper,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_config(docker_config, {"credsStore": "fake"})
    helper.fail_store()
    monkeypatch.setenv("SHIPIT_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", REG_SECRET)
    result = runner.invoke(app, ["login", "-r", "localhost:5000"])
    assert result.exit_code == 3, result.output
    assert (
        "docker-credential-fake could not store the login: the keychain is locked" in result.stderr
    )
    assert REG_SECRET not in result.output


def test_login_missing_helper_exits_3(
    project: Path, fake_api: FakeAPI, docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(docker_config, {"credsStore": "shipit-test-missing"})
    monkeypatch.setenv("SHIPIT_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", REG_SECRET)
    result = runner.invoke(app, ["login", "-r", "localhost:5000"])
    assert result.exit_code == 3, result.output
    assert "docker-credential-shipit-test-missing is not installed" in result.stderr


def test_login_engine_rejects_credentials_exits_3(
    project: Path, fake_api: FakeAPI, docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import docker.errors

    fake_api.login_error = docker.errors.APIError("401 Unauthorized")
    monkeypatch.setenv("SHIPIT_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", REG_SECRET)
    result = runner.invoke(app, ["login", "-r", "localhost:5000"])
    assert result.exit_code == 3, result.output
    assert "the registry refused the credentials (localhost:5000)" in result.stderr
    assert "Traceback" not in result.output
    assert not docker_config.exists(), "a rejected login must not be recorded"
    assert REG_SECRET not in result.output


def test_login_without_credentials_exits_3(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["login", "-r", "localhost:5000"])
    assert result.exit_code == 3, result.output
    assert "no credentials for localhost:5000" in result.stderr
    assert "SHIPIT_REGISTRY_PASSWORD" in result.stderr
    assert not fake_api.calls


def _unwritable(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # root ignores permissions, so also make the temp file fail
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o500)
    if os.geteuid() == 0:

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(dockerconfig.tempfile, "mkstemp", refuse)


def test_login_unwritable_docker_config_exits_3(
    project: Path, fake_api: FakeAPI, docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPIT_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", REG_SECRET)
    _unwritable(docker_config.parent, monkeypatch)
    try:
        result = runner.invoke(app, ["login", "-r", "localhost:5000"])
    finally:
        docker_config.parent.chmod(0o700)
    assert result.exit_code == 3, result.output
    assert f"cannot write the Docker config {docker_config}: Permission denied" in result.stderr
    assert "DOCKER_CONFIG" in result.stderr  # the hint says what to do
    assert not docker_config.exists()
    assert REG_SECRET not in result.output


def test_login_ecr_records_token(
    aws: Any, project: Path, fake_api: FakeAPI, docker_config: Path
) -> None:
    result = runner.invoke(app, ["login", "-r", "ecr", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["logged_in"][0]["server"] == ECR_HOST
    config = json.loads(docker_config.read_text())
    assert config["auths"][ECR_HOST] == {"auth": b64("AWS", ECR_TOKEN)}
    assert [kw["registry"] for n, _, kw in fake_api.calls if n == "login"] == [ECR_HOST]
    assert ECR_TOKEN not in result.output
    # login needs no repository: none was created.
    assert aws.describe_repositories()["repositories"] == []


@pytest.mark.parametrize("style", ["plain", "helper"])
def test_push_uses_the_login_that_login_recorded(
    project: Path,
    built: list[str],
    registries: Any,
    docker_config: Path,
    helper: CredentialHelper,
    style: str,
) -> None:
    if style == "helper":
        write_config(docker_config, {"credsStore": "fake"})
    login = runner.invoke(
        app, ["login", "-r", "localhost:5000", "-u", "ci", "--password-stdin"], input=REG_SECRET
    )
    assert login.exit_code == 0, login.output
    # No credentials anywhere but the Docker config now.
    result = runner.invoke(app, ["push", "-r", "localhost:5000"])
    assert result.exit_code == 0, result.output
    assert push_auths(registries.api) == [
        {"username": "ci", "password": REG_SECRET, "serveraddress": "localhost:5000"}
    ]
    assert REG_SECRET not in login.output + result.output
