"""shipit.adapters.dockerconfig: reading logins the way `docker login` records them, and recording them."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipit.adapters import dockerconfig
from shipit.cli import app
from shipit.errors import AuthError, ConfigError, ExitCode
from tests.fakes import CredentialHelper, FakeAPI, FakeRegistries, add_built_image

runner = CliRunner()

HUB_KEY = dockerconfig.DOCKER_HUB_KEY
SECRET = "cfg-Secret-Token-55555"


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    return tmp_path / "docker-config"


@pytest.fixture
def env(cfg_dir: Path) -> dict[str, str]:
    """The environment the functions see: DOCKER_CONFIG plus PATH (for credential helpers)."""
    return {"DOCKER_CONFIG": str(cfg_dir), "PATH": os.environ.get("PATH", "")}


def write(cfg_dir: Path, data: Any) -> Path:
    cfg_dir.mkdir(parents=True, exist_ok=True)
    path = cfg_dir / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def b64(user: str, secret: str) -> str:
    return base64.b64encode(f"{user}:{secret}".encode()).decode()


def helper_on_path(env: dict[str, str], directory: Path, name: str) -> CredentialHelper:
    found = CredentialHelper(directory, name)
    env["PATH"] = f"{found.dir}{os.pathsep}{env['PATH']}"
    return found


# ---------------------------------------------------------------- where the config lives


def test_config_path_prefers_docker_config(tmp_path: Path) -> None:
    assert dockerconfig.config_path({"DOCKER_CONFIG": "/x/y", "HOME": "/h"}) == Path(
        "/x/y/config.json"
    )
    assert dockerconfig.config_path({"HOME": str(tmp_path)}) == tmp_path / ".docker/config.json"


# ---------------------------------------------------------------- reading


def test_missing_or_empty_config_is_empty(cfg_dir: Path, env: dict[str, str]) -> None:
    assert dockerconfig.load(env) == {}
    assert dockerconfig.lookup("localhost:5000", env) is None
    write(cfg_dir, "  \n")
    assert dockerconfig.load(env) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"auths": {', "is not valid JSON (line 1)"),
        ('{\n  "auths": {},\n  oops\n}', "is not valid JSON (line 3)"),
        ("[1, 2]", "is not a JSON object"),
    ],
)
def test_malformed_config_is_config_error(
    cfg_dir: Path, env: dict[str, str], text: str, message: str
) -> None:
    path = write(cfg_dir, text)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        dockerconfig.lookup("localhost:5000", env)
    assert str(path) in info.value.message
    assert info.value.exit_code == ExitCode.USAGE == 2


def test_malformed_config_exits_2_on_push(
    project: Path, fake_api: FakeAPI, monkeypatch: Any
) -> None:
    FakeRegistries(fake_api).install(monkeypatch)
    add_built_image(fake_api, project)
    write(Path(os.environ["DOCKER_CONFIG"]), '{"auths": ')
    result = runner.invoke(app, ["push", "-r", "localhost:5000"])
    assert result.exit_code == 2, result.output
    assert "the Docker config" in result.stderr and "is not valid JSON" in result.stderr
    assert "Traceback" not in result.output
    assert not [c for c in fake_api.calls if c[0] == "push"]


def test_malformed_config_exits_2_on_login(project: Path, fake_api: FakeAPI) -> None:
    write(Path(os.environ["DOCKER_CONFIG"]), "{nope")
    result = runner.invoke(
        app,
        ["login", "-r", "localhost:5000"],
        env={"SHIPIT_REGISTRY_USERNAME": "ci", "SHIPIT_REGISTRY_PASSWORD": SECRET},
    )
    assert result.exit_code == 2, result.output
    assert "is not valid JSON" in result.stderr
    assert SECRET not in result.output
    # The broken file is left alone rather than overwritten.
    assert (Path(os.environ["DOCKER_CONFIG"]) / "config.json").read_text() == "{nope"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"auth": b64("u", SECRET)}, ("u", SECRET)),
        ({"auth": b64("u", "pa:ss:word")}, ("u", "pa:ss:word")),
        ({"username": "u", "password": SECRET}, ("u", SECRET)),
        ({"identitytoken": SECRET}, ("<token>", SECRET)),
        ({"auth": "%%%not-base64%%%"}, None),
        ({"auth": base64.b64encode(b"no-colon").decode()}, None),
        ({"auth": b64("", SECRET)}, None),
        ({}, None),
        ("not an object", None),
    ],
)
def test_auths_entry_forms(
    cfg_dir: Path, env: dict[str, str], entry: Any, expected: tuple[str, str] | None
) -> None:
    write(cfg_dir, {"auths": {"r.example.com": entry}})
    assert dockerconfig.lookup("r.example.com", env) == expected


def test_auths_keys_with_scheme_and_path(cfg_dir: Path, env: dict[str, str]) -> None:
    write(
        cfg_dir,
        {
            "auths": {
                "https://a.example.com": {"auth": b64("a", "1")},
                "http://b.example.com:5000": {"auth": b64("b", "2")},
                "https://c.example.com/v2/": {"auth": b64("c", "3")},
            }
        },
    )
    assert dockerconfig.lookup("a.example.com", env) == ("a", "1")
    assert dockerconfig.lookup("b.example.com:5000", env) == ("b", "2")
    assert dockerconfig.lookup("c.example.com", env) == ("c", "3")
    assert dockerconfig.lookup("b.example.com", env) is None  # the port is part of the name
    assert dockerconfig.lookup("d.example.com", env) is None


def test_exact_key_wins_over_an_alias(cfg_dir: Path, env: dict[str, str]) -> None:
    write(
        cfg_dir,
        {
            "auths": {
                "https://r.example.com": {"auth": b64("alias", "1")},
                "r.example.com": {"auth": b64("exact", "2")},
            }
        },
    )
    assert dockerconfig.lookup("r.example.com", env) == ("exact", "2")


# ---------------------------------------------------------------- Docker Hub aliases


@pytest.mark.parametrize(
    "key",
    [
        HUB_KEY,
        "https://index.docker.io/v1",
        "index.docker.io",
        "docker.io",
        "registry-1.docker.io",
        "https://registry-1.docker.io/v2/",
    ],
)
@pytest.mark.parametrize("asked", [HUB_KEY, "docker.io", "index.docker.io"])
def test_docker_hub_aliases_in_auths(
    cfg_dir: Path, env: dict[str, str], key: str, asked: str
) -> None:
    write(cfg_dir, {"auths": {key: {"auth": b64("hubuser", SECRET)}}})
    assert dockerconfig.lookup(asked, env) == ("hubuser", SECRET)
    assert dockerconfig.config_key(asked) == HUB_KEY


def test_docker_hub_is_not_any_host_that_mentions_docker(
    cfg_dir: Path, env: dict[str, str]
) -> None:
    write(cfg_dir, {"auths": {"mirror.docker.io.example.com": {"auth": b64("x", "y")}}})
    assert dockerconfig.lookup(HUB_KEY, env) is None


@pytest.mark.parametrize("key", [HUB_KEY, "docker.io", "index.docker.io"])
def test_docker_hub_aliases_in_cred_helpers(
    cfg_dir: Path, env: dict[str, str], tmp_path: Path, key: str
) -> None:
    helper = helper_on_path(env, tmp_path / "bin", "hub")
    helper.set(HUB_KEY, "hubuser", SECRET)
    write(cfg_dir, {"credHelpers": {key: "hub"}})
    assert dockerconfig.helper_for(dockerconfig.load(env), HUB_KEY) == "hub"
    assert dockerconfig.lookup(HUB_KEY, env) == ("hubuser", SECRET)
    # The helper is asked for Docker Hub's canonical server URL.
    assert helper.calls()[-1]["stdin"].strip() == HUB_KEY


# ---------------------------------------------------------------- helpers and precedence


def test_lookup_precedence_cred_helpers_then_creds_store_then_auths(
    cfg_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    per_registry = helper_on_path(env, tmp_path / "bin1", "per")
    default = helper_on_path(env, tmp_path / "bin2", "store")
    per_registry.set("r.example.com", "from-credhelpers", "s1")
    default.set("r.example.com", "from-credsstore", "s2")
    config: dict[str, Any] = {
        "auths": {"r.example.com": {"auth": b64("from-auths", "s3")}},
        "credsStore": "store",
        "credHelpers": {"r.example.com": "per", "other.example.com": "store"},
    }
    write(cfg_dir, config)
    assert dockerconfig.lookup("r.example.com", env) == ("from-credhelpers", "s1")
    assert default.calls() == []

    del config["credHelpers"]
    write(cfg_dir, config)
    assert dockerconfig.lookup("r.example.com", env) == ("from-credsstore", "s2")

    del config["credsStore"]
    write(cfg_dir, config)
    assert dockerconfig.lookup("r.example.com", env) == ("from-auths", "s3")


def test_helper_without_the_login_falls_back_to_auths(
    cfg_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    helper = helper_on_path(env, tmp_path / "bin", "empty")
    write(
        cfg_dir,
        {"credsStore": "empty", "auths": {"r.example.com": {"auth": b64("plain", "s")}}},
    )
    assert dockerconfig.lookup("r.example.com", env) == ("plain", "s")
    assert dockerconfig.lookup("nothing.example.com", env) is None
    assert [c["argv"] for c in helper.calls()] == [["get"], ["get"]]


def test_helper_get_passes_the_server_on_stdin(
    cfg_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    helper = helper_on_path(env, tmp_path / "bin", "fake")
    helper.set("localhost:5000", "u", SECRET)
    write(cfg_dir, {"credsStore": "fake"})
    assert dockerconfig.lookup("localhost:5000", env) == ("u", SECRET)
    assert helper.calls() == [{"argv": ["get"], "stdin": "localhost:5000"}]


def test_helper_garbage_answer_is_no_login(
    cfg_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "docker-credential-garbage"
    program.write_text("#!/bin/sh\necho 'this is not json'\n")
    program.chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    write(cfg_dir, {"credsStore": "garbage"})
    assert dockerconfig.lookup("localhost:5000", env) is None


def test_missing_helper_is_auth_error_with_hint(cfg_dir: Path, env: dict[str, str]) -> None:
    path = write(cfg_dir, {"credHelpers": {"localhost:5000": "shipit-test-none"}})
    with pytest.raises(
        AuthError, match="docker-credential-shipit-test-none is not installed"
    ) as info:
        dockerconfig.lookup("localhost:5000", env)
    assert info.value.hint is not None and str(path) in info.value.hint
    assert info.value.exit_code == 3


# ---------------------------------------------------------------- recording a login


def test_store_plain_entry_preserves_other_keys(cfg_dir: Path, env: dict[str, str]) -> None:
    original = {
        "auths": {
            "ghcr.io": {"auth": b64("other", "keep-me")},
            "localhost:5000": {"auth": b64("old", "old-secret")},
        },
        "credHelpers": {"123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"},
        "HttpHeaders": {"User-Agent": "x"},
        "psFormat": "table {{.ID}}",
        "experimental": "enabled",
    }
    path = write(cfg_dir, original)
    where = dockerconfig.store("localhost:5000", "ci", SECRET, env)
    assert where == str(path)
    data = json.loads(path.read_text())
    assert data["auths"] == {
        "ghcr.io": {"auth": b64("other", "keep-me")},
        "localhost:5000": {"auth": b64("ci", SECRET)},
    }
    for key in ("credHelpers", "HttpHeaders", "psFormat", "experimental"):
        assert data[key] == original[key]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in cfg_dir.iterdir()) == ["config.json"]  # no temp file left
    assert dockerconfig.lookup("localhost:5000", env) == ("ci", SECRET)


def test_store_creates_a_private_directory(cfg_dir: Path, env: dict[str, str]) -> None:
    dockerconfig.store("docker.io", "hubuser", SECRET, env)
    data = json.loads((cfg_dir / "config.json").read_text())
    assert data == {"auths": {HUB_KEY: {"auth": b64("hubuser", SECRET)}}}
    assert stat.S_IMODE(cfg_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((cfg_dir / "config.json").stat().st_mode) == 0o600


def test_store_tightens_permissions_of_an_existing_file(cfg_dir: Path, env: dict[str, str]) -> None:
    path = write(cfg_dir, {"auths": {}})
    path.chmod(0o644)
    dockerconfig.store("localhost:5000", "ci", SECRET, env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_failed_write_leaves_the_old_file_and_no_temp(
    cfg_dir: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(cfg_dir, {"auths": {"ghcr.io": {"auth": b64("a", "b")}}})
    before = path.read_text()

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dockerconfig.os, "replace", broken_replace)
    with pytest.raises(AuthError, match=r"cannot write the Docker config .*No space left") as info:
        dockerconfig.store("localhost:5000", "ci", SECRET, env)
    assert SECRET not in info.value.message
    assert path.read_text() == before
    assert sorted(p.name for p in cfg_dir.iterdir()) == ["config.json"]


def test_store_through_helper_keeps_the_secret_out_of_the_file(
    cfg_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    helper = helper_on_path(env, tmp_path / "bin", "fake")
    path = write(cfg_dir, {"credsStore": "fake", "auths": {"ghcr.io": {}}, "psFormat": "x"})
    where = dockerconfig.store("localhost:5000", "ci", SECRET, env)
    assert where == "credential helper docker-credential-fake"
    (call,) = helper.calls()
    assert call["argv"] == ["store"]
    assert json.loads(call["stdin"]) == {
        "ServerURL": "localhost:5000",
        "Username": "ci",
        "Secret": SECRET,
    }
    data = json.loads(path.read_text())
    assert data == {
        "credsStore": "fake",
        "auths": {"ghcr.io": {}, "localhost:5000": {}},
        "psFormat": "x",
    }
    assert SECRET not in path.read_text()
    assert dockerconfig.lookup("localhost:5000", env) == ("ci", SECRET)


def test_store_through_per_registry_helper_for_docker_hub(
    cfg_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    helper = helper_on_path(env, tmp_path / "bin", "hub")
    write(cfg_dir, {"credHelpers": {"docker.io": "hub"}})
    dockerconfig.store(HUB_KEY, "hubuser", SECRET, env)
    assert helper.creds() == {HUB_KEY: ["hubuser", SECRET]}
    assert SECRET not in (cfg_dir / "config.json").read_text()


def test_helper_store_failure_never_repeats_the_secret(
    cfg_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "docker-credential-echo"
    program.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "sys.stderr.write('refused: ' + sys.stdin.read() + '\\n')\nsys.exit(1)\n"
    )
    program.chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    write(cfg_dir, {"credsStore": "echo"})
    with pytest.raises(AuthError, match="docker-credential-echo could not store the login") as info:
        dockerconfig.store("localhost:5000", "ci", SECRET, env)
    assert SECRET not in info.value.message
    assert "***" in info.value.message
