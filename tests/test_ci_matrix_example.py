"""The README's GitHub Actions matrix (one job per architecture, then a join job), run step by
step on the real engine against ECR through moto: each `image` job builds and pushes its own
platform, the `manifest` job joins them, and the registry then serves one index of both.

The workflow is read from the README (the ```yaml block after the marker line below).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import test_integration_multiplatform as multiplatform
from tests.conftest import REPO_ROOT, run_shipit
from tests.support.registry import Registry
from tests.test_integration_multiplatform import MultiProject, _skopeo

pytestmark = pytest.mark.integration

# The fixtures this module shares with the multi-platform integration tests.
multi_project = multiplatform.multi_project
ecr_env = multiplatform.ecr_env

MARKER = "<!-- shipit-ci-example: github-matrix -->"
SHA = "89abcdef0123456789abcdef0123456789abcdef"
HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def matrix_workflow() -> dict[str, Any]:
    """The README's matrix workflow: the yaml block after MARKER."""
    readme = (REPO_ROOT / "README.md").read_text()
    assert MARKER in readme, f"README.md has no {MARKER} example"
    match = re.search(r"```yaml\n(.*?)```", readme[readme.index(MARKER) :], re.DOTALL)
    assert match, f"no yaml block after {MARKER}"
    return dict(yaml.safe_load(match.group(1)))


def _expand(text: str, matrix: dict[str, str], outputs: dict[str, dict[str, str]]) -> str:
    def value(match: re.Match[str]) -> str:
        path = match.group(1).split(".")
        if path[0] == "matrix":
            return matrix[path[1]]
        if path[0] == "steps" and path[2] == "outputs":
            return outputs.get(path[1], {}).get(path[3], "")
        raise AssertionError(f"unexpected expression {match.group(0)}")

    return re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", value, text)


def _read_outputs(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT's key=value and key<<DELIMITER blocks."""
    values: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        key, sep, rest = lines[i].partition("=")
        if sep and "<<" not in key:
            values[key] = rest
            i += 1
            continue
        key, _, delimiter = lines[i].partition("<<")
        end = lines.index(delimiter, i + 1)
        values[key] = "\n".join(lines[i + 1 : end])
        i = end + 1
    return values


def run_job(
    job: dict[str, Any], matrix: dict[str, str], env: dict[str, str], cwd: Path, tmp: Path
) -> list[dict[str, Any]]:
    """Run every `shipit` line of a job's steps as the runner would; each step's outputs."""
    outputs: dict[str, dict[str, str]] = {}
    ran = []
    for index, step in enumerate(job["steps"]):
        if "run" not in step:
            continue
        output_file = tmp / f"output-{matrix.get('platform', 'join').replace('/', '-')}-{index}"
        step_env = {**env, "GITHUB_OUTPUT": str(output_file)}
        for line in _expand(step["run"], matrix, outputs).splitlines():
            if not line.strip().startswith("shipit "):
                continue
            result = run_shipit(*shlex.split(line)[1:], "--json", env=step_env, cwd=cwd)
            assert result.returncode == 0, (line, result.stderr)
            ran.append({"line": line, "json": json.loads(result.stdout), "stderr": result.stderr})
        if "id" in step:
            outputs[step["id"]] = _read_outputs(output_file)
    return ran


def test_readme_matrix_workflow_builds_each_platform_then_joins_one_index(
    multi_project: MultiProject,
    ecr_env: tuple[dict[str, str], Registry],
    tmp_path: Path,
) -> None:
    aws_env, ecr = ecr_env
    workflow = matrix_workflow()
    jobs = workflow["jobs"]
    join_name = next(name for name, job in jobs.items() if job.get("needs"))
    runner_name = jobs[join_name]["needs"]
    runners = jobs[runner_name]
    entries = runners["strategy"]["matrix"]["include"]
    assert sorted(e["platform"] for e in entries) == ["linux/amd64", "linux/arm64"]
    project = multi_project.path
    (project / "pyproject.toml").write_text(f'[tool.shipit]\nname = "{multi_project.name}"\n')
    env = {
        **aws_env,
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_REF_NAME": "main",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_SHA": SHA,
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        # The push event's payload, as the runner provides it: main is the default branch.
        "GITHUB_EVENT_PATH": str(tmp_path / "event.json"),
    }
    (tmp_path / "event.json").write_text(json.dumps({"repository": {"default_branch": "main"}}))
    tags = ["latest", f"sha-{SHA[:7]}", "main"]
    for entry in entries:  # the runners, one after the other on this one engine
        suffix = entry["platform"].replace("/", "-")
        for tag in tags:  # what the runner leaves on the engine, removed even if it fails
            multi_project.cleanup.images.append(f"{multi_project.name}:{tag}")
            multi_project.cleanup.images.append(f"{multi_project.name}:{tag}-{suffix}")
            multi_project.cleanup.images.append(f"{HOST}/{multi_project.name}:{tag}-{suffix}")
        ran = run_job(runners, {k: str(v) for k, v in entry.items()}, env, project, tmp_path)
        build, push = ran
        assert build["json"]["image_id"]
        multi_project.image_ids.append(build["json"]["image_id"])
        assert {p["reference"] for p in push["json"]["pushed"]} == {
            f"{HOST}/{multi_project.name}:{tag}-{suffix}" for tag in tags
        }
        shown = [ln for ln in push["stderr"].splitlines() if not ln.startswith("::add-mask::")]
        assert not any("123456789012-auth-token" in line for line in shown)
    (join,) = run_job(jobs[join_name], {}, env, project, tmp_path)
    published = join["json"]["pushed"]
    assert [p["reference"] for p in published] == [f"{HOST}/{multi_project.name}:{t}" for t in tags]
    (digest,) = {p["digest"] for p in published}
    raw = _skopeo("--creds", ecr.creds or "", "--raw", f"docker://{HOST}/{multi_project.name}:main")
    assert {m["platform"]["architecture"] for m in raw["manifests"]} == {"amd64", "arm64"}
    arm = _skopeo(
        "--creds", ecr.creds or "", "--override-arch", "arm64",
        f"docker://{HOST}/{multi_project.name}:latest",
    )  # fmt: skip
    assert arm["Architecture"] == "arm64"
    outputs = _read_outputs(next(tmp_path.glob("output-join-*")))
    assert outputs["digest"] == digest
    assert f"{HOST}/{multi_project.name}:main@{digest}" in outputs["references"].splitlines()
