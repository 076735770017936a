"""Habits docker and CI users bring: `-t NAME:TAG`, `--build-arg KEY`, `--iidfile`,
`--metadata-file`, build-push-action's GitHub outputs, OCI labels from the project, warnings
that are not hidden behind `-v`, and plain logs without terminal escapes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipit.cli import app
from tests.fakes import FakeAPI, FakeRegistries, add_built_image, image_id_for

runner = CliRunner()
REG = "localhost:5000"
ESC = "\x1b"


def build_kwargs(api: FakeAPI) -> dict[str, Any]:
    return next(kwargs for name, _, kwargs in api.calls if name == "build")


def git_project(path: Path, remote: str | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "Dockerfile").write_text("FROM scratch\nCOPY app.txt /\n")
    (path / "app.txt").write_text("hi\n")
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    if remote is not None:
        subprocess.run(["git", "-C", str(path), "remote", "add", "origin", remote], check=True)
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
        check=True,
    )
    return path


# ---------------------------------------------------------------- 8: -t NAME:TAG, --build-arg KEY


def test_tag_with_a_name_names_the_image(
    tmp_path: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = git_project(tmp_path / "ctx", None)
    monkeypatch.chdir(context)
    result = runner.invoke(app, ["build", "--json", "-t", "web:1.0"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "web"
    assert "web:1.0" in data["tags"]
    assert build_kwargs(fake_api)["tag"] == "web:1.0"


def test_tag_with_the_configured_name_is_accepted(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "--json", "-t", "demo:1.0"])
    assert result.exit_code == 0, result.output
    assert "demo:1.0" in json.loads(result.stdout)["tags"]


def test_tag_naming_another_image_exits_2_saying_so(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "-t", "other:1.0"])
    assert result.exit_code == 2, result.output
    assert "other" in result.stderr and "demo" in result.stderr
    assert not [c for c in fake_api.calls if c[0] == "build"]


def test_two_tags_naming_different_images_exit_2(
    tmp_path: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_project(tmp_path / "ctx", None))
    result = runner.invoke(app, ["build", "-t", "web:1.0", "-t", "api:1.0"])
    assert result.exit_code == 2, result.output
    assert "web" in result.stderr and "api" in result.stderr


def test_push_accepts_name_tag_too(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeRegistries(fake_api).install(monkeypatch)
    add_built_image(fake_api, project, tags=("1.0",), latest=False)
    result = runner.invoke(app, ["push", "-r", REG, "-t", "demo:1.0", "--no-latest", "--json"])
    assert result.exit_code == 0, result.output
    references = [p["reference"] for p in json.loads(result.stdout)["pushed"]]
    assert f"{REG}/demo:1.0" in references


def test_build_arg_without_a_value_comes_from_the_environment(
    project: Path, fake_api: FakeAPI
) -> None:
    result = runner.invoke(
        app,
        ["build", "--build-arg", "PYTHON_IMAGE", "--build-arg", "NOT_SET_ANYWHERE"],
        env={"PYTHON_IMAGE": "shipit.local/python:3.11", "NOT_SET_ANYWHERE": None},
    )
    assert result.exit_code == 0, result.output
    buildargs = build_kwargs(fake_api)["buildargs"]
    assert buildargs["PYTHON_IMAGE"] == "shipit.local/python:3.11"
    assert "NOT_SET_ANYWHERE" not in buildargs  # docker skips an unset variable too


# ---------------------------------------------------------------- 9: docker-compatible outputs


def test_iidfile_holds_the_image_id(project: Path, fake_api: FakeAPI, tmp_path: Path) -> None:
    iidfile = tmp_path / "out" / "iid"
    iidfile.parent.mkdir()
    result = runner.invoke(app, ["build", "--json", "--iidfile", str(iidfile)])
    assert result.exit_code == 0, result.output
    assert iidfile.read_text() == json.loads(result.stdout)["image_id"]


def test_metadata_file_has_buildx_keys(project: Path, fake_api: FakeAPI, tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    result = runner.invoke(app, ["build", "--json", "--metadata-file", str(path)])
    assert result.exit_code == 0, result.output
    built = json.loads(result.stdout)
    metadata = json.loads(path.read_text())
    assert metadata["containerimage.config.digest"] == built["image_id"]
    assert metadata["image.name"] == ",".join(built["tags"])


def test_release_metadata_file_has_the_pushed_digest(
    project: Path, fake_api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registries = FakeRegistries(fake_api).install(monkeypatch)
    path = tmp_path / "metadata.json"
    iid = tmp_path / "iid"
    result = runner.invoke(
        app,
        ["release", "-r", REG, "--metadata-file", str(path), "--iidfile", str(iid), "--json"],
    )
    assert result.exit_code == 0, result.output
    metadata = json.loads(path.read_text())
    digest = registries.served_digest(f"{REG}/demo:latest")
    assert metadata["containerimage.digest"] == digest
    assert f"{REG}/demo:latest" in metadata["image.name"].split(",")
    assert metadata["containerimage.config.digest"] == iid.read_text()


def github_outputs(path: Path) -> dict[str, str]:
    """Parse GITHUB_OUTPUT (key=value and key<<DELIMITER blocks)."""
    lines = path.read_text().splitlines()
    values: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[key] = "\n".join(lines[i + 1 : end])
            i = end + 1
        else:
            key, _, value = line.partition("=")
            values[key] = value
            i += 1
    return values


def test_github_outputs_match_build_push_action(
    project: Path, fake_api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registries = FakeRegistries(fake_api).install(monkeypatch)
    output = tmp_path / "github_output"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(output)}
    result = runner.invoke(app, ["release", "-r", REG, "--no-latest", "-t", "edge"], env=env)
    assert result.exit_code == 0, result.output
    values = github_outputs(output)
    digest = registries.served_digest(f"{REG}/demo:edge")
    assert values["digest"] == digest
    assert values["imageid"] == image_id_for("demo:edge")
    assert json.loads(values["metadata"])["containerimage.digest"] == digest
    tags = values["tags"].splitlines()
    assert f"{REG}/demo:edge" in tags and all(t.startswith(f"{REG}/demo:") for t in tags)
    assert values["image"] == "demo"  # today's names stay
    assert f"{REG}/demo:edge@{digest}" in values["references"].splitlines()


# ---------------------------------------------------------------- 10: OCI labels


@pytest.mark.parametrize(
    ("remote", "source"),
    [
        ("/srv/git/web.git", None),
        ("file:///srv/git/web.git", None),
        ("../web.git", None),
        ("https://bob:s3cr3t@example.com/acme/web.git", "https://example.com/acme/web.git"),
        ("git@github.com:acme/web.git", "https://github.com/acme/web"),
        ("ssh://git@github.com/acme/web.git", "https://github.com/acme/web"),
    ],
)
def test_source_label_only_for_url_remotes(
    tmp_path: Path,
    fake_api: FakeAPI,
    monkeypatch: pytest.MonkeyPatch,
    remote: str,
    source: str | None,
) -> None:
    monkeypatch.chdir(git_project(tmp_path / "web", remote))
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    labels = build_kwargs(fake_api)["labels"]
    assert labels.get("org.opencontainers.image.source") == source
    assert "s3cr3t" not in json.dumps(labels)


def test_description_url_and_licenses_come_from_the_context_project(
    tmp_path: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = git_project(tmp_path / "web", "https://example.com/acme/web.git")
    (context / "pyproject.toml").write_text(
        '[project]\nname = "web"\nversion = "1.0"\ndescription = "The web front end"\n'
        'license = "Apache-2.0"\n[project.urls]\nHomepage = "https://web.example.com"\n'
    )
    monkeypatch.chdir(context)
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    labels = build_kwargs(fake_api)["labels"]
    assert labels["org.opencontainers.image.description"] == "The web front end"
    assert labels["org.opencontainers.image.url"] == "https://web.example.com"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_no_project_metadata_means_no_such_labels(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    labels = build_kwargs(fake_api)["labels"]
    assert "org.opencontainers.image.description" not in labels
    assert "org.opencontainers.image.licenses" not in labels


# ---------------------------------------------------------------- 7: unavailable --cache-from


def test_unavailable_cache_from_warns_at_normal_verbosity(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "--cache-from", "registry.example.com/demo:latest"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("registry.example.com/demo:latest" in line for line in warnings), result.stderr


# ---------------------------------------------------------------- 12: plain logs without ANSI


def test_plain_push_errors_carry_no_terminal_escapes(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeRegistries(fake_api).install(monkeypatch)
    _, references = add_built_image(fake_api, project)
    message = f"{ESC}[91mmanifest invalid: {ESC}[1mbad layer{ESC}[0m"
    fake_api.push_errors[f"{REG}/demo:{references[0].split(':', 1)[1]}"] = [
        {"error": message, "errorDetail": {"message": message}}
    ]
    result = runner.invoke(app, ["push", "-r", REG], env={"CI": "true"})
    assert result.exit_code == 6, result.output
    assert ESC not in result.stderr
    assert "manifest invalid: bad layer" in result.stderr


def test_plain_build_output_carries_no_terminal_escapes(project: Path, fake_api: FakeAPI) -> None:
    image_id = image_id_for("demo:latest")
    fake_api.build_chunks = [
        {"stream": "Step 1/2 : FROM base\n"},
        {"stream": f"{ESC}[91mnpm WARN{ESC}[0m deprecated\n"},
        {"stream": f"{ESC}]0;title{ESC}\\progress {ESC}[2K\r100%\n"},
        {"aux": {"ID": image_id}},
        {"stream": f"Successfully built {image_id[7:19]}\n"},
    ]
    fake_api.add_image("demo:latest", image_id)
    result = runner.invoke(app, ["build"], env={"CI": "true"})
    assert result.exit_code == 0, result.output
    assert ESC not in result.stderr
    assert "npm WARN deprecated" in result.stderr


def test_plain_container_logs_carry_no_terminal_escapes(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipit.services import smoke as smoke_service

    fake_api.add_image("demo:latest")
    fake_api.health_script = ["unhealthy"]
    fake_api.log_lines = [f"{ESC}[31mcrashed{ESC}[0m: no database"]
    monkeypatch.setattr(smoke_service, "probe_http", lambda url, timeout: 500)
    result = runner.invoke(app, ["smoke"])
    assert result.exit_code == 7, result.output
    assert ESC not in result.stderr
    assert "crashed: no database" in result.stderr
