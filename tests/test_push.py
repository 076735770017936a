"""`shipit push` through Typer's CliRunner against the fake engine and in-memory registries.

No network: the FakeAPI stands in for the engine, FakeRegistries for the registries' HTTP API
(monkeypatched into shipit.services.push), and moto's in-process `mock_aws` for ECR. A guard makes any
TCP connection attempt fail the test.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from shipit.cli import app
from shipit.services.retry import RetryPolicy
from tests.fakes import FakeAPI, FakeRegistries, add_built_image, image_id_for, isolate_aws

runner = CliRunner()

ACCOUNT = "123456789012"
ECR_HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
REG = "localhost:5000"
OTHER = "registry.example.com:5443"
SECRET = "push-Secret-Passw0rd-4242"


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests make no network calls: any inet connection attempt is an error."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"unit test tried to connect to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def registries(fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> FakeRegistries:
    return FakeRegistries(fake_api).install(monkeypatch)


@pytest.fixture
def built(project: Path, fake_api: FakeAPI) -> list[str]:
    """`shipit build` has run: the tags the tag rules give (latest, sha-XXXXXXX)."""
    _, references = add_built_image(fake_api, project)
    return [ref.split(":", 1)[1] for ref in references]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    isolate_aws(monkeypatch, tmp_path)
    with mock_aws():
        yield boto3.client("ecr", region_name="us-east-1")


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries happen at once (the backoff itself is tested with the retry module)."""
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, failures, error, rng: 0.0)


def calls(api: FakeAPI, *names: str) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    return [c for c in api.calls if c[0] in names]


def pushed_refs(api: FakeAPI) -> list[str]:
    return [f"{args[0]}:{kwargs['tag']}" for _, args, kwargs in calls(api, "push")]


def error_chunk(message: str) -> dict[str, Any]:
    return {"error": message, "errorDetail": {"message": message}}


# ---------------------------------------------------------------- the happy path


def test_push_prints_reference_at_digest_and_verifies_every_tag(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    result = runner.invoke(app, ["push", "--registry", REG])
    assert result.exit_code == 0, result.output
    digest = registries.served_digest(f"{REG}/demo:latest")
    assert digest is not None
    assert result.stdout.splitlines() == [f"{REG}/demo:{t}@{digest}" for t in built]
    assert f"pushed {REG}/demo:{built[0]}@{digest}" in result.stderr
    assert f"tagged {REG}/demo:{built[1]}@{digest}" in result.stderr
    # The image was tagged for the registry, pushed once, and every tag was checked.
    image_id = image_id_for(f"demo:{built[0]}")
    assert [c[1] for c in calls(registries.api, "tag")] == [(image_id, f"{REG}/demo", built[0])]
    assert pushed_refs(registries.api) == [f"{REG}/demo:{built[0]}"]
    assert [c[1][0] for c in calls(registries.api, "inspect_distribution")] == [
        f"{REG}/demo:{t}" for t in built
    ]


def test_json_output_is_one_object(
    project: Path, fake_api: FakeAPI, registries: FakeRegistries
) -> None:
    add_built_image(fake_api, project, version="2.0.0")
    result = runner.invoke(app, ["push", "-r", REG, "--version", "2.0.0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout
    assert data["dry_run"] is False
    refs = [p["reference"] for p in data["pushed"]]
    assert refs[:4] == [f"{REG}/demo:{t}" for t in ("2.0.0", "2.0", "2", "latest")]
    assert all(set(p) == {"registry", "reference", "digest", "status"} for p in data["pushed"])
    assert len({p["digest"] for p in data["pushed"]}) == 1
    assert [p["status"] for p in data["pushed"]] == ["pushed"] + ["tagged"] * (len(refs) - 1)


def test_release_builds_then_pushes_what_it_built(
    project: Path, registries: FakeRegistries
) -> None:
    result = runner.invoke(app, ["release", "-r", REG, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dry_run"] is False
    assert len(calls(registries.api, "build")) == 1
    first = data["build"]["tags"][0].split(":", 1)[1]
    assert pushed_refs(registries.api) == [f"{REG}/demo:{first}"]
    digest = registries.served_digest(f"{REG}/demo:latest")
    assert [p["reference"] for p in data["pushed"]] == [
        f"{REG}/{reference}" for reference in data["build"]["tags"]
    ]
    assert {p["digest"] for p in data["pushed"]} == {digest}


def test_release_dry_run_builds_and_pushes_nothing(
    project: Path, registries: FakeRegistries
) -> None:
    result = runner.invoke(app, ["release", "-r", REG, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["build"] is None and data["dry_run"] is True
    assert calls(registries.api, "build", "push", "tag") == []
    assert "would build" in result.stderr


def test_two_registries_are_pushed_concurrently(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    # Each push waits until the other one has started: sequential pushes would time out here.
    barrier = threading.Barrier(2, timeout=10)
    store = registries.pushed

    def meeting_push(repository: str, tag: str, image_id: str) -> str:
        barrier.wait()
        return store(repository, tag, image_id)

    registries.api.on_push = meeting_push
    result = runner.invoke(app, ["push", "--registry", REG, "--registry", OTHER, "--json"])
    assert result.exit_code == 0, result.output
    pushed = json.loads(result.stdout)["pushed"]
    by_registry: dict[str, list[str]] = {}
    for p in pushed:
        assert p["digest"].startswith("sha256:")
        by_registry.setdefault(p["registry"], []).append(p["reference"])
    assert by_registry == {
        REG: [f"{REG}/demo:{t}" for t in built],
        OTHER: [f"{OTHER}/demo:{t}" for t in built],
    }
    assert sorted(pushed_refs(registries.api)) == sorted(
        [f"{REG}/demo:{built[0]}", f"{OTHER}/demo:{built[0]}"]
    )


def test_same_registry_twice_is_pushed_once(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    result = runner.invoke(app, ["push", "-r", REG, "-r", REG, "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["pushed"]) == len(built)
    assert pushed_refs(registries.api) == [f"{REG}/demo:{built[0]}"]


def test_registries_from_environment(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    result = runner.invoke(app, ["push", "--json"], env={"SHIPIT_REGISTRIES": f"{REG} {OTHER}"})
    assert result.exit_code == 0, result.output
    assert {p["registry"] for p in json.loads(result.stdout)["pushed"]} == {REG, OTHER}


# ---------------------------------------------------------------- input errors


def test_tag_missing_locally_exits_2(project: Path, registries: FakeRegistries) -> None:
    result = runner.invoke(app, ["push", "--registry", REG])
    assert result.exit_code == 2, result.output
    assert "image 'demo:latest' does not exist locally: run 'shipit build' first" in result.stderr
    assert "Traceback" not in result.output
    assert not calls(registries.api, "push", "tag")


def test_one_missing_tag_of_several_exits_2(
    project: Path, fake_api: FakeAPI, registries: FakeRegistries
) -> None:
    add_built_image(fake_api, project)  # without --version: 1.0.0 was never built
    result = runner.invoke(app, ["push", "-r", REG, "--version", "1.0.0"])
    assert result.exit_code == 2, result.output
    assert "image 'demo:1.0.0' does not exist locally: run 'shipit build'" in result.stderr
    assert not calls(fake_api, "push", "tag")


def test_tags_naming_different_images_exit_2(
    project: Path, fake_api: FakeAPI, registries: FakeRegistries
) -> None:
    _, references = add_built_image(fake_api, project)
    fake_api.images.clear()
    fake_api.add_image(references[0], image_id_for("new build"))
    fake_api.add_image(references[1], image_id_for("old build"))
    result = runner.invoke(app, ["push", "-r", REG])
    assert "is a different image from" in result.stderr
    assert not calls(fake_api, "push", "tag")
    assert result.exit_code == 2


@pytest.mark.parametrize("value", ["foo", "quay", "not a host"])
def test_unknown_registry_exits_2_before_anything(
    project: Path, built: list[str], registries: FakeRegistries, value: str
) -> None:
    result = runner.invoke(app, ["push", "--registry", REG, "--registry", value])
    assert result.exit_code == 2, result.output
    assert f"registry '{value}'" in result.stderr
    assert "'ecr', 'dockerhub', or a registry host" in result.stderr
    assert not registries.api.calls, "the engine was contacted before validation"


def test_no_registry_exits_2(project: Path, built: list[str], registries: FakeRegistries) -> None:
    result = runner.invoke(app, ["push"])
    assert result.exit_code == 2, result.output
    assert "no registry: pass --registry" in result.stderr


# ---------------------------------------------------------------- push stream failures


def test_error_chunk_fails_with_exit_6(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    registries.api.push_errors[f"{REG}/demo:{built[0]}"] = [
        error_chunk("manifest invalid: manifest invalid")
    ]
    result = runner.invoke(app, ["push", "-r", REG, "--json"])
    assert result.exit_code == 6, result.output
    assert "the registry rejected the image or its name" in result.stderr
    assert "manifest invalid" in result.stderr
    assert json.loads(result.stdout)["error"]["kind"] == "invalid"  # no success JSON
    assert json.loads(result.stdout)["pushed"] == []
    assert "pushed " not in result.stderr
    assert registries.tags(f"{REG}/demo") == {}


def test_error_chunk_after_progress_is_not_success(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    # The engine streamed progress and even a digest line, then an error: still a failure.
    registries.api.push_chunks[f"{REG}/demo:{built[0]}"] = [
        {"status": "Pushing", "id": "aaaaaaaaaaaa", "progressDetail": {"current": 1, "total": 2}},
        {"status": f"{built[0]}: digest: sha256:{'0' * 64} size: 1"},
        error_chunk("blob upload invalid: blob unknown to registry"),
    ]
    result = runner.invoke(app, ["push", "-r", REG])
    assert result.exit_code == 6, result.output
    assert "blob unknown" in result.stderr
    assert result.stdout == ""


def test_stream_without_digest_exits_6(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    registries.api.push_chunks[f"{REG}/demo:{built[0]}"] = [{"status": "Preparing", "id": "x"}]
    result = runner.invoke(app, ["push", "-r", REG])
    assert result.exit_code == 6, result.output
    assert "without the registry reporting a digest" in result.stderr


@pytest.mark.parametrize(
    "message",
    [
        "unauthorized: authentication required",
        "denied: requested access to the resource is denied",
        "no basic auth credentials",
    ],
)
def test_auth_error_chunk_exits_3(
    project: Path,
    built: list[str],
    registries: FakeRegistries,
    monkeypatch: pytest.MonkeyPatch,
    message: str,
) -> None:
    monkeypatch.setenv("SHIPIT_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", SECRET)
    registries.api.push_errors[f"{REG}/demo:{built[0]}"] = [error_chunk(message)] * 5
    result = runner.invoke(app, ["push", "-r", REG])
    assert result.exit_code == 3, result.output
    assert "the registry refused the credentials" in result.stderr
    assert "hint: check the username and token/password" in result.stderr
    assert SECRET not in result.output
    # Authentication failures are not retried.
    assert len(calls(registries.api, "push")) == 1


RATE_LIMIT = (
    "toomanyrequests: You have reached your pull rate limit. You may increase the limit by "
    "authenticating and upgrading: https://www.docker.com/increase-rate-limit"
)


def test_rate_limited_push_exits_6_explaining_the_limit(
    project: Path, built: list[str], registries: FakeRegistries, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKERHUB_USERNAME", "bob")
    monkeypatch.setenv("DOCKERHUB_TOKEN", SECRET)
    registries.api.push_errors[f"docker.io/bob/demo:{built[0]}"] = [error_chunk(RATE_LIMIT)]
    result = runner.invoke(app, ["push", "-r", "dockerhub", "--retries", "1"])
    assert result.exit_code == 6, result.output
    assert "the registry is rate limiting requests" in result.stderr
    assert "toomanyrequests" in result.stderr
    assert "gave up after 1 attempt" in result.stderr
    assert "Docker Hub limits anonymous and free accounts" in result.stderr
    assert SECRET not in result.output


def test_rate_limit_is_retried_then_succeeds(
    project: Path,
    built: list[str],
    registries: FakeRegistries,
    monkeypatch: pytest.MonkeyPatch,
    no_backoff: None,
) -> None:
    monkeypatch.setenv("DOCKERHUB_USERNAME", "bob")
    monkeypatch.setenv("DOCKERHUB_TOKEN", SECRET)
    ref = f"docker.io/bob/demo:{built[0]}"
    registries.api.push_errors[ref] = [error_chunk(RATE_LIMIT), error_chunk(RATE_LIMIT)]
    result = runner.invoke(app, ["push", "-r", "dockerhub", "--retries", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning: dockerhub: throttled") == 2
    assert "retry 1" in result.stderr and "retry 2" in result.stderr
    assert pushed_refs(registries.api) == [ref, ref, ref]


def test_rate_limit_exhausts_retries(
    project: Path,
    built: list[str],
    registries: FakeRegistries,
    monkeypatch: pytest.MonkeyPatch,
    no_backoff: None,
) -> None:
    registries.api.push_errors[f"{REG}/demo:{built[0]}"] = [error_chunk(RATE_LIMIT)] * 10
    result = runner.invoke(app, ["push", "-r", REG, "--retries", "3"])
    assert result.exit_code == 6, result.output
    assert "gave up after 3 attempts" in result.stderr
    assert len(calls(registries.api, "push")) == 3


def test_digest_mismatch_exits_6(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    ref = f"{REG}/demo:{built[0]}"
    reported = "sha256:" + "1" * 64
    registries.api.push_chunks[ref] = [
        {"status": f"{built[0]}: digest: {reported} size: 1"},
        {"aux": {"Tag": built[0], "Digest": reported, "Size": 1}},
    ]
    served = "sha256:" + "2" * 64
    registries.api.served[ref] = served
    result = runner.invoke(app, ["push", "-r", REG, "--json"])
    assert result.exit_code == 6, result.output
    assert f"{ref}: the registry serves {served} but the push reported {reported}" in result.stderr
    assert "hint: another push may have moved the tag" in result.stderr
    assert json.loads(result.stdout)["error"]["kind"] == "digest_mismatch"


def test_unreachable_registry_during_verification_exits_6(
    project: Path, built: list[str], registries: FakeRegistries, no_backoff: None
) -> None:
    import docker.errors

    def refuse(reference: str) -> str | None:
        raise docker.errors.APIError(
            "500 Server Error", explanation="dial tcp 127.0.0.1:5000: connect: connection refused"
        )

    registries.api.on_inspect_distribution = refuse
    registries.api.served.clear()
    registries.api.push_chunks[f"{REG}/demo:{built[0]}"] = [
        {"aux": {"Tag": built[0], "Digest": "sha256:" + "3" * 64, "Size": 1}}
    ]
    result = runner.invoke(app, ["push", "-r", REG, "--retries", "2"])
    assert result.exit_code == 6, result.output
    assert "the registry could not be reached" in result.stderr


# ---------------------------------------------------------------- release-tag protection


@pytest.fixture
def release(project: Path, fake_api: FakeAPI) -> str:
    """demo built as version 1.2.3: tags 1.2.3, 1.2, 1, latest, sha-XXXXXXX; returns its id."""
    image_id, _ = add_built_image(fake_api, project, version="1.2.3")
    return image_id


def test_existing_release_tag_with_same_image_is_unchanged(
    release: str, registries: FakeRegistries
) -> None:
    existing = registries.seed(f"{REG}/demo:1.2.3", release)
    result = runner.invoke(app, ["push", "-r", REG, "--version", "1.2.3", "--json"])
    assert result.exit_code == 0, result.output
    status = {
        p["reference"]: (p["status"], p["digest"]) for p in json.loads(result.stdout)["pushed"]
    }
    assert status[f"{REG}/demo:1.2.3"] == ("unchanged", existing)
    assert f"{REG}/demo:1.2.3 is already up to date" in result.stderr
    # 1.2.3 was neither pushed nor re-tagged; the moving tags were.
    assert f"{REG}/demo:1.2.3" not in pushed_refs(registries.api)
    assert ("PUT", REG, "demo", "1.2.3") not in registries.requests
    assert status[f"{REG}/demo:latest"][0] in {"pushed", "tagged"}


def test_existing_release_tag_with_other_image_is_refused_everywhere(
    release: str, registries: FakeRegistries
) -> None:
    old = registries.seed(f"{REG}/demo:1.2.3", image_id_for("an older build"))
    result = runner.invoke(app, ["push", "-r", OTHER, "-r", REG, "--version", "1.2.3", "--json"])
    assert result.exit_code == 6, result.output
    assert (
        f"release tag {REG}/demo:1.2.3 already exists with a different image ({old}); "
        "refusing to overwrite it"
    ) in result.stderr
    assert "--allow-overwrite" in result.stderr
    assert json.loads(result.stdout)["error"]["kind"] == "overwrite_refused"
    # Nothing was pushed or tagged for any registry, and the registry kept the old image.
    assert not calls(registries.api, "push", "tag")
    assert not [r for r in registries.requests if r[0] == "PUT"]
    assert registries.served_digest(f"{REG}/demo:1.2.3") == old
    assert registries.tags(f"{OTHER}/demo") == {}


def test_allow_overwrite_replaces_a_release_tag(release: str, registries: FakeRegistries) -> None:
    old = registries.seed(f"{REG}/demo:1.2.3", image_id_for("an older build"))
    result = runner.invoke(
        app, ["push", "-r", REG, "--version", "1.2.3", "--allow-overwrite", "--json"]
    )
    assert result.exit_code == 0, result.output
    pushed = {p["reference"]: p for p in json.loads(result.stdout)["pushed"]}
    assert pushed[f"{REG}/demo:1.2.3"]["status"] == "pushed"
    new = pushed[f"{REG}/demo:1.2.3"]["digest"]
    assert new != old
    assert registries.served_digest(f"{REG}/demo:1.2.3") == new


def test_moving_tags_are_always_pushed(release: str, registries: FakeRegistries) -> None:
    # latest, 1.2 and 1 already point at another image: they move without any check.
    for tag in ("latest", "1.2", "1"):
        registries.seed(f"{REG}/demo:{tag}", image_id_for("an older build"))
    result = runner.invoke(app, ["push", "-r", REG, "--version", "1.2.3", "--json"])
    assert result.exit_code == 0, result.output
    pushed = json.loads(result.stdout)["pushed"]
    assert {p["status"] for p in pushed} <= {"pushed", "tagged"}
    assert len({p["digest"] for p in pushed}) == 1
    for tag in ("latest", "1.2", "1"):
        assert registries.served_digest(f"{REG}/demo:{tag}") == pushed[0]["digest"]
    # Only the release tag was looked up before pushing.
    looked_up = [
        r[3] for r in registries.requests if r[0] == "GET" and not r[3].startswith("sha256:")
    ]
    assert looked_up == ["1.2.3"]


def test_prerelease_is_a_release_tag(
    project: Path, fake_api: FakeAPI, registries: FakeRegistries
) -> None:
    add_built_image(fake_api, project, version="2.0.0-rc.1")
    registries.seed(f"{REG}/demo:2.0.0-rc.1", image_id_for("an older build"))
    result = runner.invoke(app, ["push", "-r", REG, "--version", "2.0.0-rc.1"])
    assert result.exit_code == 6, result.output
    assert "refusing to overwrite" in result.stderr


def test_release_check_uses_the_pushing_credentials(
    release: str, registries: FakeRegistries, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPIT_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPIT_REGISTRY_PASSWORD", SECRET)
    result = runner.invoke(app, ["push", "-r", REG, "--version", "1.2.3"])
    assert result.exit_code == 0, result.output
    assert [(a.username, a.password) for a in registries.client_auths] == [("ci", SECRET)]


# ---------------------------------------------------------------- ECR


def test_ecr_push_lands_every_tag_through_put_image(
    aws: Any,
    project: Path,
    fake_api: FakeAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeRegistries(fake_api, ecr=aws).install(monkeypatch)
    add_built_image(fake_api, project, version="1.2.3")
    result = runner.invoke(app, ["push", "-r", "ecr", "--version", "1.2.3", "--json"])
    assert result.exit_code == 0, result.output
    pushed = json.loads(result.stdout)["pushed"]
    assert pushed[0]["reference"] == f"{ECR_HOST}/demo:1.2.3"
    assert [p["status"] for p in pushed] == ["pushed"] + ["tagged"] * (len(pushed) - 1)
    details = aws.describe_images(repositoryName="demo")["imageDetails"]
    assert len(details) == 1
    assert sorted(details[0]["imageTags"]) == sorted(
        p["reference"].rsplit(":", 1)[1] for p in pushed
    )
    assert len(calls(fake_api, "push")) == 1

    # The same release again: 1.2.3 is reported unchanged and nothing is pushed for it.
    again = runner.invoke(app, ["push", "-r", "ecr", "--version", "1.2.3", "--json"])
    assert again.exit_code == 0, again.output
    first = json.loads(again.stdout)["pushed"][0]
    assert (first["reference"], first["status"]) == (f"{ECR_HOST}/demo:1.2.3", "unchanged")


def test_ecr_expired_token_is_refreshed_once(
    aws: Any,
    project: Path,
    built: list[str],
    fake_api: FakeAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeRegistries(fake_api, ecr=aws).install(monkeypatch)
    fake_api.push_errors[f"{ECR_HOST}/demo:{built[0]}"] = [
        error_chunk("denied: Your authorization token has expired. Reauthenticate and try again.")
    ]
    result = runner.invoke(app, ["push", "-r", "ecr"])
    assert result.exit_code == 0, result.output
    assert "authorization rejected; fetching a fresh ECR token" in result.stderr
    assert len(calls(fake_api, "push")) == 2


def test_ecr_no_create_repo_refuses_missing_repository(
    aws: Any, project: Path, built: list[str], fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeRegistries(fake_api, ecr=aws).install(monkeypatch)
    result = runner.invoke(app, ["push", "-r", "ecr", "--no-create-repo"])
    assert result.exit_code == 6, result.output
    assert "ECR repository 'demo' does not exist" in result.stderr
    assert not calls(fake_api, "push", "tag")
    assert aws.describe_repositories()["repositories"] == []


def test_ecr_immutable_and_kms_options_reach_create_repository(
    aws: Any, project: Path, built: list[str], fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeRegistries(fake_api, ecr=aws).install(monkeypatch)
    result = runner.invoke(
        app,
        [
            "push",
            "-r",
            "ecr",
            "--repository",
            "team/web",
            "--immutable-tags",
            "--kms-key",
            "alias/x",
        ],
    )
    assert result.exit_code == 0, result.output
    repo = aws.describe_repositories(repositoryNames=["team/web"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["encryptionConfiguration"]["encryptionType"] == "KMS"
    assert f"{ECR_HOST}/team/web:latest@" in result.stdout


# ---------------------------------------------------------------- dry run


def test_dry_run_changes_nothing(
    aws: Any, project: Path, built: list[str], fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    registries = FakeRegistries(fake_api, ecr=aws).install(monkeypatch)
    monkeypatch.setenv("DOCKERHUB_USERNAME", "bob")
    monkeypatch.setenv("DOCKERHUB_TOKEN", SECRET)
    result = runner.invoke(app, ["push", "-r", "ecr", "-r", "dockerhub", "-r", REG, "--dry-run"])
    assert result.exit_code == 0, result.output
    expected = [
        f"{repo}:{tag}"
        for repo in (f"{ECR_HOST}/demo", "docker.io/bob/demo", f"{REG}/demo")
        for tag in built
    ]
    assert result.stdout.splitlines() == expected
    for reference in expected:
        assert f"would push {reference}" in result.stderr
    assert (
        f"would ensure ECR repository demo in {ECR_HOST}: create if missing "
        "(scan on push, AES256, MUTABLE tags)"
    ) in result.stderr
    for host in (ECR_HOST, "docker.io", REG):
        assert f"would log in to {host}" in result.stderr
    # Nothing was tagged, pushed or logged in, no registry was asked, and ECR is untouched.
    assert not calls(fake_api, "push", "tag", "login", "inspect_distribution")
    assert registries.requests == []
    assert aws.describe_repositories()["repositories"] == []
    assert SECRET not in result.output


def test_dry_run_json(project: Path, built: list[str], registries: FakeRegistries) -> None:
    result = runner.invoke(app, ["push", "-r", REG, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dry_run"] is True
    assert data["pushed"] == [
        {"registry": REG, "reference": f"{REG}/demo:{t}", "digest": "", "status": "planned"}
        for t in built
    ]
    assert not calls(registries.api, "push", "tag")


def test_dry_run_still_requires_the_built_image(project: Path, registries: FakeRegistries) -> None:
    result = runner.invoke(app, ["push", "-r", REG, "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "run 'shipit build'" in result.stderr


# ---------------------------------------------------------------- output modes


def test_verbose_shows_push_status_lines(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    result = runner.invoke(app, ["push", "-r", REG, "--verbose"])
    assert result.exit_code == 0, result.output
    assert f"The push refers to repository [{REG}/demo]" in result.stderr
    assert "aaaaaaaaaaaa: Pushed" in result.stderr


def test_quiet_prints_only_results(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    result = runner.invoke(app, ["push", "-r", REG, "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == len(built)


def test_github_actions_masks_the_secret_before_use(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    env = {"GITHUB_ACTIONS": "true", "CI": "true"}
    result = runner.invoke(
        app,
        ["push", "-r", REG, "-u", "ci", "--password-stdin", "--latest"],
        input=SECRET + "\n",
        env=env,
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    # The secret appears only in the ::add-mask:: command, which comes before any use of it.
    assert [line for line in lines if SECRET in line] == [f"::add-mask::{SECRET}"]
    assert lines.index(f"::add-mask::{SECRET}") < next(
        i for i, line in enumerate(lines) if "pushed " in line
    )
    assert "::group::Push" in lines
    assert SECRET not in result.stdout


def test_github_actions_masks_environment_secrets_first(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "DOCKERHUB_USERNAME": "bob",
        "DOCKERHUB_TOKEN": SECRET,
    }
    result = runner.invoke(app, ["push", "-r", "dockerhub", "--latest"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"::add-mask::{SECRET}"
    assert [line for line in lines if SECRET in line] == [lines[0]]


def test_one_failing_registry_fails_the_run_after_the_other_finished(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    registries.api.push_errors[f"{REG}/demo:{built[0]}"] = [
        error_chunk("manifest invalid: manifest invalid")
    ]
    result = runner.invoke(app, ["push", "-r", REG, "-r", OTHER, "--json"])
    assert result.exit_code == 6, result.output
    data = json.loads(result.stdout)  # what landed and what failed (tests/test_json_errors.py)
    assert [f["registry"] for f in data["failed"]] == [REG]
    # The healthy registry was pushed completely (the failure of one does not cut the other off).
    digest = registries.served_digest(f"{OTHER}/demo:{built[0]}")
    assert registries.tags(f"{OTHER}/demo") == {t: digest for t in built}
    assert registries.tags(f"{REG}/demo") == {}


def test_push_error_names_the_failing_registry(
    project: Path, built: list[str], registries: FakeRegistries
) -> None:
    registries.api.push_errors[f"{REG}/demo:{built[0]}"] = [
        error_chunk("manifest invalid: manifest invalid")
    ]
    result = runner.invoke(app, ["push", "-r", REG, "-r", OTHER])
    assert result.exit_code == 6, result.output
    error_line = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert REG in error_line
