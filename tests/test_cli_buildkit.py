"""`shipit build` with BuildKit against the fake engine: builder choice, --secret, --ssh,
progress, warnings and failures, as a user sees them."""

from __future__ import annotations

import base64
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipit.cli import app
from tests.fakes import FakeAPI

runner = CliRunner()


def _builds(api: FakeAPI) -> list[dict[str, Any]]:
    return [kwargs for name, _, kwargs in api.calls if name == "build"]


def test_buildkit_is_the_default_builder(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "-v"])
    assert result.exit_code == 0, result.output
    [build] = _builds(fake_api)
    assert build["version"] == "2"
    assert build["buildargs"]["BUILDKIT_INLINE_CACHE"] == "1"
    assert "builder: buildkit" in result.stderr
    assert "#2 [1/2] FROM base" in result.stderr or "[1/2] FROM base" in result.stderr
    assert "built demo:latest in " in result.stderr


def test_docker_buildkit_0_selects_the_legacy_builder(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "-v"], env={"DOCKER_BUILDKIT": "0"})
    assert result.exit_code == 0, result.output
    [build] = _builds(fake_api)
    assert build.get("version") is None
    assert "BUILDKIT_INLINE_CACHE" not in build["buildargs"]
    assert "builder: legacy" in result.stderr and "Step 1/2 : FROM base" in result.stderr


def test_the_config_key_selects_the_builder(project: Path, fake_api: FakeAPI) -> None:
    (project / "pyproject.toml").write_text('[tool.shipit]\nname = "demo"\nbuilder = "legacy"\n')
    assert runner.invoke(app, ["build"]).exit_code == 0
    assert _builds(fake_api)[-1].get("version") is None
    (project / "pyproject.toml").write_text('[tool.shipit]\nname = "demo"\nbuilder = "kaniko"\n')
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 2
    assert "builder" in result.stderr and "buildkit" in result.stderr


def test_an_engine_without_buildkit_falls_back_with_one_note(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_api, "version", lambda: {"Version": "18.06", "ApiVersion": "1.38"})
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "legacy builder" in line]
    assert notes == [
        "building with the legacy builder: the engine's API 1.38 predates BuildKit "
        "(API 1.39, Docker 18.09)"
    ]
    assert _builds(fake_api)[0].get("version") is None


def test_bridge_network_is_sent_as_default(project: Path, fake_api: FakeAPI) -> None:
    assert runner.invoke(app, ["build", "--network", "bridge"]).exit_code == 0
    assert _builds(fake_api)[0]["network_mode"] == "default"


def test_cache_from_is_handed_to_the_engine_without_pulls(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "--cache-from", "reg.example/demo:latest"])
    assert result.exit_code == 0, result.output
    assert not [c for c in fake_api.calls if c[0] == "pull"]
    assert _builds(fake_api)[0]["cache_from"] == [
        "reg.example/demo:latest",
        "reg.example/demo:buildcache",
    ]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    # The engine could not import it: said at normal verbosity; its buildcache only with -v.
    assert any("reg.example/demo:latest is not available" in line for line in warnings)
    assert not any("demo:buildcache" in line for line in warnings)


def test_unused_build_arg_is_a_warning(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(
        app, ["build", "--build-arg", "PYTHON_IMAG=x", "--build-arg", "APP_VERSION=1"]
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: build")]
    assert warnings == [
        "warning: build arg 'PYTHON_IMAG' is not used: the Dockerfile declares no ARG PYTHON_IMAG"
    ]


def test_secret_looking_build_arg_points_to_secret(project: Path, fake_api: FakeAPI) -> None:
    (project / "Dockerfile").write_text("FROM scratch\nARG API_TOKEN\nCOPY app.txt /\n")
    result = runner.invoke(app, ["build", "--build-arg", "API_TOKEN=x"])
    assert result.exit_code == 0, result.output
    assert "--secret id=API_TOKEN,env=API_TOKEN" in result.stderr


def test_multi_stage_builds_the_final_image_then_the_builder_stage(
    project: Path, fake_api: FakeAPI
) -> None:
    (project / "Dockerfile").write_text(
        "FROM scratch AS builder\nCOPY app.txt /\nFROM scratch\nCOPY --from=builder / /\n"
    )
    result = runner.invoke(app, ["build", "--no-cache"])
    assert result.exit_code == 0, result.output
    assert [(b["tag"], b["target"], b["nocache"]) for b in _builds(fake_api)] == [
        ("demo:latest", None, True),
        ("demo:buildcache", "builder", False),  # reuses what the first request built
    ]


# ---------------------------------------------------------------- --secret and --ssh


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--secret", "id=tok,src=/no/such/file"], {}, "secret 'tok'"),
        (["--secret", "id=tok,env=SHIPIT_TEST_UNSET"], {}, "SHIPIT_TEST_UNSET is not set"),
        (["--secret", "src=/etc/hostname"], {}, "id=ID is required"),
        (["--secret", "id=tok,colour=blue"], {}, "expected id=ID[,src=PATH|,env=VAR]"),
        (["--ssh", "default"], {"SSH_AUTH_SOCK": ""}, "SSH_AUTH_SOCK is not set"),
        (["--ssh", "deploy=/no/such/agent.sock"], {}, "is not reachable"),
        (["--secret", "id=tok,env=HOME"], {"DOCKER_BUILDKIT": "0"}, "need BuildKit"),
    ],
)
def test_bad_secret_or_ssh_exits_2_before_the_engine(
    project: Path, fake_api: FakeAPI, args: list[str], env: dict[str, str], message: str
) -> None:
    result = runner.invoke(app, ["build", *args], env=env)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not _builds(fake_api), "the engine was asked to build"


def test_a_secret_opens_a_session_and_never_shows_its_value(
    project: Path, fake_api: FakeAPI
) -> None:
    value = "hunter2-very-secret"
    (project / "Dockerfile").write_text(
        f"FROM scratch\nCOPY app.txt /\n# {value} never printed: masked\n"
    )
    result = runner.invoke(
        app,
        ["build", "-v", "--secret", "id=tok,env=MY_TOKEN", "--build-arg", f"X={value}"],
        env={"MY_TOKEN": value},
    )
    assert result.exit_code == 0, result.output
    [session] = fake_api.sessions
    assert session.served == ["SecretsProvider", "AuthProvider", "FileSyncProvider"]
    assert _builds(fake_api)[0]["session"] == session.id
    assert value not in result.output  # even the unused-arg warning names only the key


def test_ssh_default_uses_the_agent_socket(
    project: Path, fake_api: FakeAPI, tmp_path: Path
) -> None:
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.bind(str(tmp_path / "agent.sock"))
    try:
        result = runner.invoke(
            app, ["build", "--ssh", "default"], env={"SSH_AUTH_SOCK": str(tmp_path / "agent.sock")}
        )
    finally:
        agent.close()
    assert result.exit_code == 0, result.output
    assert [s.served for s in fake_api.sessions] == [
        ["SecretsProvider", "AuthProvider", "SSHProvider", "FileSyncProvider"]
    ]


def test_a_private_cache_source_opens_a_session_with_credentials(
    project: Path, fake_api: FakeAPI
) -> None:
    config = Path(os.environ["DOCKER_CONFIG"])
    config.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(b"u:p").decode()
    (config / "config.json").write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": auth}}}))
    result = runner.invoke(app, ["build", "--cache-from", "127.0.0.1:5000/demo:latest"])
    assert result.exit_code == 0, result.output
    assert [s.served for s in fake_api.sessions] == [
        ["SecretsProvider", "AuthProvider", "FileSyncProvider"]
    ]


def test_the_context_goes_through_file_sync(project: Path, fake_api: FakeAPI) -> None:
    assert runner.invoke(app, ["build"], env={"SHIPIT_BUILD_CONTEXT": "sync"}).exit_code == 0
    [build] = _builds(fake_api)
    [session] = fake_api.sessions
    assert session.served == ["FileSyncProvider"]  # nothing else is needed
    assert (build["remote"], build["session"]) == ("client-session", session.id)
    assert build["dockerfile"] == "Dockerfile"


def test_auto_sends_a_small_context_as_a_tar_and_a_big_one_through_file_sync(
    project: Path, fake_api: FakeAPI
) -> None:
    small = runner.invoke(app, ["build", "-v"])
    assert small.exit_code == 0, small.output
    assert fake_api.sessions == []
    assert "context sent as a tar: a small context" in small.stderr
    (project / "data.bin").write_bytes(b"x" * (3 * 1024 * 1024))
    big = runner.invoke(app, ["build", "-v"])
    assert big.exit_code == 0, big.output
    [session] = fake_api.sessions
    assert session.served == ["FileSyncProvider"]
    assert "context sent through file sync: " in big.stderr
    assert _builds(fake_api)[-1]["remote"] == "client-session"


def test_with_the_tar_switch_a_plain_build_opens_no_session(
    project: Path, fake_api: FakeAPI
) -> None:
    result = runner.invoke(app, ["build"], env={"SHIPIT_BUILD_CONTEXT": "tar"})
    assert result.exit_code == 0, result.output
    [build] = _builds(fake_api)
    assert build["session"] is None and build["remote"] is None
    assert fake_api.sessions == []
    assert "Dockerfile" in fake_api.context_names
    bad = runner.invoke(app, ["build"], env={"SHIPIT_BUILD_CONTEXT": "zip"})
    assert bad.exit_code == 2 and "SHIPIT_BUILD_CONTEXT" in bad.stderr


# ---------------------------------------------------------------- failures and --json


def test_a_failing_step_shows_its_last_lines_and_exit_code(
    project: Path, fake_api: FakeAPI
) -> None:
    fake_api.build_chunks = [
        {"stream": "Step 1/2 : FROM scratch\n"},
        {"stream": "Step 2/2 : RUN make [/dim]\n"},
        {"stream": "compiling [bold]x\n"},
        {"stream": "boom: something broke\n"},
        {"error": "The command '/bin/sh -c make' returned a non-zero code: 3"},
    ]
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 5
    assert "error: build failed at [2/2] RUN make [/dim]: exit code 3" in result.stderr
    assert "  | compiling [bold]x" in result.stderr
    assert "  | boom: something broke" in result.stderr


def test_json_output_is_unchanged(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "--json", "--tag", "t1", "--no-latest"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"name", "image_id", "tags", "size_bytes"}
    assert data["tags"][0] == "demo:t1" and "demo:latest" not in data["tags"]


def test_release_takes_the_same_secret_option(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(
        app, ["release", "-r", "localhost:5000", "--secret", "id=tok,src=/no/such/file"]
    )
    assert result.exit_code == 2, result.output
    assert "secret 'tok'" in result.stderr
    assert not _builds(fake_api)


@pytest.mark.parametrize(
    ("env", "args", "stages"),
    [
        ({"SHIPIT_CACHE_STAGE": "", "CI": ""}, [], [None]),
        ({"SHIPIT_CACHE_STAGE": "", "CI": "true"}, [], [None, "builder"]),
        (
            {"SHIPIT_CACHE_STAGE": "", "CI": ""},
            ["--cache-from", "r.example/x:1"],
            [None, "builder"],
        ),
        ({"SHIPIT_CACHE_STAGE": "0", "CI": "true"}, [], [None]),
        ({"SHIPIT_CACHE_STAGE": "1", "CI": ""}, [], [None, "builder"]),
    ],
)
def test_the_builder_stage_cache_image_is_built_where_it_is_used(
    project: Path, fake_api: FakeAPI, env: dict[str, str], args: list[str], stages: list[Any]
) -> None:
    (project / "Dockerfile").write_text(
        "FROM scratch AS builder\nCOPY . /src\nFROM scratch\nCOPY --from=builder /src /app\n"
    )
    result = runner.invoke(app, ["build", *args], env=env)
    assert result.exit_code == 0, result.output
    assert [b.get("target") for b in _builds(fake_api)] == stages


def test_push_cache_without_the_cache_image_says_how_to_make_it(
    project: Path, fake_api: FakeAPI
) -> None:
    (project / "Dockerfile").write_text(
        "FROM scratch AS builder\nCOPY . /src\nFROM scratch\nCOPY --from=builder /src /app\n"
    )
    env = {"SHIPIT_CACHE_STAGE": "", "CI": ""}
    assert runner.invoke(app, ["build"], env=env).exit_code == 0
    result = runner.invoke(app, ["push", "--registry", "localhost:5000", "--push-cache"], env=env)
    assert result.exit_code == 2, result.output
    assert "buildcache" in result.stderr and "SHIPIT_CACHE_STAGE=1" in result.stderr
    bad = runner.invoke(app, ["build"], env={"SHIPIT_CACHE_STAGE": "maybe"})
    assert bad.exit_code == 2 and "SHIPIT_CACHE_STAGE" in bad.stderr
