"""`shipit build` through Typer's CliRunner against the fake engine: exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipit.cli import app
from tests.conftest import head
from tests.fakes import FakeAPI

runner = CliRunner()


def test_build_json_reports_tags_and_size(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "--json", "--version", "1.2.3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    sha = head(project)
    assert data["name"] == "demo"
    assert data["tags"] == [
        "demo:1.2.3",
        "demo:1.2",
        "demo:1",
        "demo:latest",
        f"demo:sha-{sha[:7]}",
    ]
    assert data["image_id"].startswith("sha256:")
    assert data["size_bytes"] == 1234


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SOURCE_DATE_EPOCH": "1600000000"}, "2020-09-13T12:26:40Z"),
        ({}, "2023-11-14T22:13:20Z"),  # outside git: the newest file sent
    ],
)
def test_created_label_outside_git(
    tmp_path: Path, fake_api: FakeAPI, env: dict[str, str], expected: str
) -> None:
    context = tmp_path / "ctx"
    (context / "sub").mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (context / "sub" / "new.txt").write_text("x")
    (context / "old.txt").write_text("x")
    (context / "ignored.txt").write_text("x")
    (context / ".dockerignore").write_text("ignored.txt\n")
    for path, when in (
        (context / "Dockerfile", 1_500_000_000),
        (context / ".dockerignore", 1_500_000_000),
        (context / "old.txt", 1_600_000_000),
        (context / "sub" / "new.txt", 1_700_000_000),
        (context / "sub", 1_600_000_000),
        (context / "ignored.txt", 1_800_000_000),  # not sent: does not count
    ):
        os.utime(path, (when, when))
    result = runner.invoke(app, ["build", str(context), "--name", "demo"], env=env)
    assert result.exit_code == 0, result.output
    (_, _, kwargs) = next(c for c in fake_api.calls if c[0] == "build")
    assert kwargs["labels"]["org.opencontainers.image.created"] == expected


def test_created_label_given_by_the_user_wins(tmp_path: Path, fake_api: FakeAPI) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    label = "org.opencontainers.image.created=2001-01-01T00:00:00Z"
    result = runner.invoke(app, ["build", str(tmp_path), "--name", "demo", "--label", label])
    assert result.exit_code == 0, result.output
    (_, _, kwargs) = next(c for c in fake_api.calls if c[0] == "build")
    assert kwargs["labels"]["org.opencontainers.image.created"] == "2001-01-01T00:00:00Z"


def test_build_sends_labels_and_version_args(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "--version", "2.0.0", "--label", "team=web"])
    assert result.exit_code == 0, result.output
    (_, _, kwargs) = next(c for c in fake_api.calls if c[0] == "build")
    labels = kwargs["labels"]
    assert labels["org.opencontainers.image.revision"] == head(project)
    assert labels["org.opencontainers.image.source"] == "https://example.com/x.git"
    assert labels["org.opencontainers.image.version"] == "2.0.0"
    assert labels["org.opencontainers.image.title"] == "demo"
    committed = subprocess.run(
        ["git", "-C", str(project), "show", "-s", "--format=%ct", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    created = datetime.fromtimestamp(int(committed), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert labels["org.opencontainers.image.created"] == created  # the commit's, not the clock's
    assert labels["team"] == "web"
    assert kwargs["buildargs"] == {
        "APP_VERSION": "2.0.0",
        "APP_REVISION": head(project),
        "BUILDKIT_INLINE_CACHE": "1",  # every image can be a --cache-from source
    }
    assert "s3cr3t" not in result.output


def test_build_tags_every_tag(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "-t", "edge", "--no-latest"])
    assert result.exit_code == 0, result.output
    tagged = [(c[1][1], c[1][2]) for c in fake_api.calls if c[0] == "tag"]
    assert tagged == [("demo", f"sha-{head(project)[:7]}")]
    (_, _, kwargs) = next(c for c in fake_api.calls if c[0] == "build")
    assert kwargs["tag"] == "demo:edge"
    assert result.stdout.split() == ["demo:edge", f"demo:sha-{head(project)[:7]}"]


def _builds(fake_api: FakeAPI) -> list[dict[str, object]]:
    return [kwargs for name, _, kwargs in fake_api.calls if name == "build"]


MULTI_STAGE = (
    "FROM scratch AS builder\nCOPY app.txt /\nFROM scratch\nCOPY --from=builder /app.txt /\n"
)


@pytest.mark.parametrize("dockerfile", ["FROM scratch\nCOPY app.txt /\n", MULTI_STAGE])
def test_build_without_cache_from_sends_no_cache_source(
    project: Path, fake_api: FakeAPI, dockerfile: str
) -> None:
    # Any cache source limits the legacy builder to that image's layers (to none while it does
    # not exist yet), so no stage may get one unasked - not even its own previous tag.
    (project / "Dockerfile").write_text(dockerfile)
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    builds = _builds(fake_api)
    assert len(builds) == (2 if dockerfile == MULTI_STAGE else 1)
    assert [b.get("cache_from") for b in builds] == [None] * len(builds)


def test_no_cache_builds_the_builder_stage_once(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")  # the legacy builder's behaviour
    (project / "Dockerfile").write_text(MULTI_STAGE)
    result = runner.invoke(app, ["build", "--no-cache"])
    assert result.exit_code == 0, result.output
    assert [
        (b.get("target"), b.get("nocache"), b.get("cache_from")) for b in _builds(fake_api)
    ] == [
        ("builder", True, None),
        (None, False, ["demo:buildcache"]),  # only what this build just made
    ]


def test_build_with_cache_from_adds_each_stage_own_tag(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")  # the legacy builder's behaviour
    (project / "Dockerfile").write_text(MULTI_STAGE)
    fake_api.add_image("reg.example/demo:latest")
    fake_api.add_image("reg.example/demo:buildcache")
    result = runner.invoke(app, ["build", "--cache-from", "reg.example/demo:latest"])
    assert result.exit_code == 0, result.output
    pulled = ["reg.example/demo:latest", "reg.example/demo:buildcache"]
    assert [(b.get("target"), b["cache_from"]) for b in _builds(fake_api)] == [
        ("builder", [*pulled, "demo:buildcache"]),
        (None, [*pulled, "demo:latest"]),
    ]


def test_cli_option_beats_env_beats_config(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "--json"], env={"SHIPIT_NAME": "from-env"})
    assert json.loads(result.stdout)["name"] == "from-env"
    result = runner.invoke(
        app, ["build", "--json", "--name", "from-cli"], env={"SHIPIT_NAME": "from-env"}
    )
    assert json.loads(result.stdout)["name"] == "from-cli"


def test_name_defaults_to_normalised_context_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_api: FakeAPI
) -> None:
    ctx = tmp_path / "My_Web App"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["build", "--json", "My_Web App"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tags"] == ["my_web-app:latest"]


def test_secret_looking_build_arg_warns_without_the_value(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "--build-arg", "NPM_TOKEN=hunter2hunter2"])
    assert result.exit_code == 0, result.output
    assert "NPM_TOKEN" in result.stderr
    assert "hunter2hunter2" not in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--tag", "bad tag"], 2, "invalid tag 'bad tag'"),
        (["--name", "Bad"], 2, "invalid image name 'Bad'"),
        (["--build-arg", "=VALUE"], 2, "--build-arg '' must be KEY=VALUE"),
        (["--label", "x"], 2, "--label 'x' must be KEY=VALUE"),
        (["missing-dir"], 2, "build context 'missing-dir' does not exist"),
        (["-f", "nope/Dockerfile"], 2, "Dockerfile"),
        (["--version", "1.0.0+meta"], 2, "build metadata"),
    ],
)
def test_bad_input_exits_with_code_and_one_line(
    project: Path, fake_api: FakeAPI, args: list[str], code: int, message: str
) -> None:
    result = runner.invoke(app, ["build", *args])
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not any(c[0] == "build" for c in fake_api.calls), "engine contacted before validation"


def test_failing_run_step_exits_5_with_step_and_output(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")  # the legacy builder's behaviour
    fake_api.build_chunks = [
        {"stream": "Step 1/2 : FROM scratch\n"},
        {"stream": "Step 2/2 : RUN false\n"},
        {"stream": "boom: something broke\n"},
        {
            "error": "The command '/bin/sh -c false' returned a non-zero code: 1",
            "errorDetail": {
                "code": 1,
                "message": "The command '/bin/sh -c false' returned a non-zero code: 1",
            },
        },
    ]
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 5
    assert "Step 2/2 : RUN false" in result.stderr
    assert "boom: something broke" in result.stderr
    assert "Traceback" not in result.output


def test_malformed_config_exits_2(project: Path, fake_api: FakeAPI) -> None:
    (project / "pyproject.toml").write_text("[tool.shipit]\nname = [\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 2
    assert "malformed pyproject.toml" in result.stderr


def test_engine_unreachable_names_docker_host(project: Path) -> None:
    result = runner.invoke(app, ["build"], env={"DOCKER_HOST": "tcp://127.0.0.1:9"})
    assert result.exit_code == 4
    assert "tcp://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.output


def test_engine_unreachable_names_socket(project: Path, tmp_path: Path) -> None:
    sock = f"unix://{tmp_path}/missing.sock"
    result = runner.invoke(app, ["build"], env={"DOCKER_HOST": sock})
    assert result.exit_code == 4
    assert sock in result.stderr


def test_an_ssh_docker_host_is_refused_with_the_socket_forward_to_use(project: Path) -> None:
    result = runner.invoke(app, ["build"], env={"DOCKER_HOST": "ssh://deploy@build-host"})
    assert result.exit_code == 4
    assert "DOCKER_HOST ssh://deploy@build-host: shipit does not reach engines over ssh://" in (
        result.stderr
    )
    assert "ssh -nNT -L /tmp/docker.sock:/var/run/docker.sock" in result.stderr
    assert "DOCKER_HOST=unix:///tmp/docker.sock" in result.stderr
    assert "Traceback" not in result.output


def test_version_and_help_are_fast_paths() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("shipit ")
    code = (
        "import sys, shipit.cli; "
        "print(any(m in sys.modules for m in ('docker', 'boto3', 'botocore')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
