"""CI tag defaults, the way docker/metadata-action sets them.

In CI, `latest` goes only to the default branch and to release tags (never to a pull/merge
request or another branch); a git tag `vX.Y.Z` adds X.Y.Z, X.Y and X (a pre-release only
itself); explicit `--latest/--no-latest` and `--version` win. The README's table of CI events
is checked row by row against the real `shipit build`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from shipit.cli import app
from tests.conftest import REPO_ROOT
from tests.fakes import FakeAPI

runner = CliRunner()
SHA = "0123456789abcdef0123456789abcdef01234567"

# Every CI variable the detection reads: a test sets the ones it needs and clears the rest.
CI_VARIABLES = (
    "CI",
    "GITHUB_ACTIONS",
    "GITHUB_EVENT_NAME",
    "GITHUB_EVENT_PATH",
    "GITHUB_REF",
    "GITHUB_REF_NAME",
    "GITHUB_REF_TYPE",
    "GITHUB_HEAD_REF",
    "GITHUB_BASE_REF",
    "GITHUB_SHA",
    "GITLAB_CI",
    "CI_COMMIT_SHA",
    "CI_COMMIT_BRANCH",
    "CI_COMMIT_REF_NAME",
    "CI_COMMIT_TAG",
    "CI_DEFAULT_BRANCH",
    "CI_MERGE_REQUEST_IID",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
    "CI_PIPELINE_SOURCE",
    "CODEBUILD_BUILD_ID",
    "CODEBUILD_WEBHOOK_TRIGGER",
    "CODEBUILD_WEBHOOK_HEAD_REF",
    "CODEBUILD_WEBHOOK_EVENT",
    "CODEBUILD_SOURCE_VERSION",
    "CODEBUILD_RESOLVED_SOURCE_VERSION",
    "SHIPIT_DEFAULT_BRANCH",
    "SHIPIT_LATEST",
    "SHIPIT_VERSION",
    "SHIPIT_TAGS",
)


def github_env(
    tmp_path: Path, *, event: str, ref: str, default_branch: str | None = "main", **extra: str
) -> dict[str, str | None]:
    """GitHub Actions variables with an event payload file, as the runner writes them."""
    payload: dict[str, object] = {}
    if default_branch is not None:
        payload["repository"] = {"default_branch": default_branch}
    if event.startswith("pull_request"):
        payload["number"] = 42
        payload["pull_request"] = {"number": 42, "head": {"ref": "feature/Login"}}
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    name = ref.rsplit("/", 1)[-1]
    if ref.startswith(("refs/heads/", "refs/tags/")):
        name = ref.split("/", 2)[2]
    env: dict[str, str | None] = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(path),
        "GITHUB_REF": ref,
        "GITHUB_REF_NAME": name,
        "GITHUB_SHA": SHA,
    }
    return _complete({**env, **extra})


def _complete(env: dict[str, str | None]) -> dict[str, str | None]:
    """Unset (None) every CI variable the test did not give."""
    return {**{var: None for var in CI_VARIABLES}, **env}


def built_tags(env: dict[str, str | None], *args: str) -> list[str]:
    """The tags `shipit build --json` applies, without the image name and the sha- tag."""
    result = runner.invoke(app, ["build", "--json", *args], env=env)
    assert result.exit_code == 0, result.output
    tags = [t.split(":", 1)[1] for t in json.loads(result.stdout)["tags"]]
    return [t for t in tags if not t.startswith("sha-")]


# ---------------------------------------------------------------- GitHub Actions


def test_github_pull_request_never_gets_latest(
    project: Path, fake_api: FakeAPI, tmp_path: Path
) -> None:
    env = github_env(
        tmp_path, event="pull_request", ref="refs/pull/42/merge", GITHUB_HEAD_REF="feature/Login"
    )
    assert built_tags(env) == ["pr-42"]


def test_github_pull_request_target_is_a_pull_request_too(
    project: Path, fake_api: FakeAPI, tmp_path: Path
) -> None:
    # pull_request_target runs on the base branch's ref: still a pull request, no latest.
    env = github_env(tmp_path, event="pull_request_target", ref="refs/heads/main")
    assert built_tags(env) == ["pr-42"]


def test_github_default_branch_gets_latest(
    project: Path, fake_api: FakeAPI, tmp_path: Path
) -> None:
    env = github_env(tmp_path, event="push", ref="refs/heads/trunk", default_branch="trunk")
    assert sorted(built_tags(env)) == ["latest", "trunk"]


def test_github_other_branch_gets_no_latest(
    project: Path, fake_api: FakeAPI, tmp_path: Path
) -> None:
    env = github_env(tmp_path, event="push", ref="refs/heads/feature/Login")
    assert built_tags(env) == ["feature-login"]


def test_github_unknown_default_branch_gets_no_latest(
    project: Path, fake_api: FakeAPI, tmp_path: Path
) -> None:
    env = github_env(tmp_path, event="push", ref="refs/heads/main", default_branch=None)
    assert built_tags(env) == ["main"]


def test_github_release_tag_adds_version_tags_and_latest(
    project: Path, fake_api: FakeAPI, tmp_path: Path
) -> None:
    env = github_env(tmp_path, event="push", ref="refs/tags/v1.2.3")
    assert sorted(built_tags(env)) == sorted(["1.2.3", "1.2", "1", "latest"])


def test_github_prerelease_tag_adds_only_itself(
    project: Path, fake_api: FakeAPI, tmp_path: Path
) -> None:
    env = github_env(tmp_path, event="push", ref="refs/tags/v2.0.0-rc.1")
    assert built_tags(env) == ["2.0.0-rc.1"]


def test_github_release_tag_sets_the_version_label(
    project: Path, fake_api: FakeAPI, tmp_path: Path
) -> None:
    env = github_env(tmp_path, event="push", ref="refs/tags/v1.2.3")
    result = runner.invoke(app, ["build"], env=env)
    assert result.exit_code == 0, result.output
    (_, _, kwargs) = next(c for c in fake_api.calls if c[0] == "build")
    assert kwargs["labels"]["org.opencontainers.image.version"] == "1.2.3"


# ---------------------------------------------------------------- GitLab CI and CodeBuild


def test_gitlab_merge_request_never_gets_latest(project: Path, fake_api: FakeAPI) -> None:
    env = _complete(
        {
            "CI": "true",
            "GITLAB_CI": "true",
            "CI_COMMIT_SHA": SHA,
            "CI_DEFAULT_BRANCH": "main",
            "CI_MERGE_REQUEST_IID": "42",
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "main",
        }
    )
    assert built_tags(env) == ["pr-42"]


def test_gitlab_default_branch_and_other_branch(project: Path, fake_api: FakeAPI) -> None:
    base = {"CI": "true", "GITLAB_CI": "true", "CI_COMMIT_SHA": SHA, "CI_DEFAULT_BRANCH": "main"}
    main = _complete({**base, "CI_COMMIT_BRANCH": "main"})
    assert sorted(built_tags(main)) == ["latest", "main"]
    other = _complete({**base, "CI_COMMIT_BRANCH": "release/2.x"})
    assert built_tags(other) == ["release-2.x"]


def test_gitlab_tag_pipeline_adds_version_tags(project: Path, fake_api: FakeAPI) -> None:
    env = _complete(
        {
            "CI": "true",
            "GITLAB_CI": "true",
            "CI_COMMIT_SHA": SHA,
            "CI_DEFAULT_BRANCH": "main",
            "CI_COMMIT_TAG": "1.2.3",
        }
    )
    assert sorted(built_tags(env)) == sorted(["1.2.3", "1.2", "1", "latest"])


def test_codebuild_tag_webhook_adds_version_tags(project: Path, fake_api: FakeAPI) -> None:
    env = _complete(
        {
            "CODEBUILD_BUILD_ID": "b:1",
            "CODEBUILD_WEBHOOK_TRIGGER": "tag/v3.4.5",
            "CODEBUILD_WEBHOOK_HEAD_REF": "refs/tags/v3.4.5",
            "CODEBUILD_RESOLVED_SOURCE_VERSION": SHA,
        }
    )
    assert sorted(built_tags(env)) == sorted(["3.4.5", "3.4", "3", "latest"])


def test_codebuild_pull_request_gets_no_latest(project: Path, fake_api: FakeAPI) -> None:
    env = _complete(
        {
            "CODEBUILD_BUILD_ID": "b:1",
            "CODEBUILD_WEBHOOK_TRIGGER": "pr/12",
            "CODEBUILD_RESOLVED_SOURCE_VERSION": SHA,
        }
    )
    assert built_tags(env) == ["pr-12"]


# ---------------------------------------------------------------- explicit options win


def test_explicit_latest_wins_on_a_pull_request(
    project: Path, fake_api: FakeAPI, tmp_path: Path
) -> None:
    env = github_env(tmp_path, event="pull_request", ref="refs/pull/42/merge")
    assert sorted(built_tags(env, "--latest")) == ["latest", "pr-42"]


def test_explicit_no_latest_wins_on_a_release_tag(
    project: Path, fake_api: FakeAPI, tmp_path: Path
) -> None:
    env = github_env(tmp_path, event="push", ref="refs/tags/v1.2.3")
    assert sorted(built_tags(env, "--no-latest")) == sorted(["1.2.3", "1.2", "1"])


def test_explicit_version_wins_over_the_git_tag(
    project: Path, fake_api: FakeAPI, tmp_path: Path
) -> None:
    env = github_env(tmp_path, event="push", ref="refs/tags/v1.2.3")
    assert "1.2.3" not in built_tags(env, "--version", "9.8.7")
    assert sorted(built_tags(env, "--version", "9.8.7")) == sorted(["9.8.7", "9.8", "9", "latest"])


def test_outside_ci_latest_is_unchanged(project: Path, fake_api: FakeAPI) -> None:
    assert built_tags(_complete({})) == ["latest"]


# ---------------------------------------------------------------- the README's table


def readme_table(heading: str) -> list[dict[str, str]]:
    """Rows of the first Markdown table under `heading`, as {column: cell}."""
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index(heading)
    lines = text[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, rows = table[0], table[2:]
    return [dict(zip(header, row, strict=True)) for row in rows]


def _spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


def _row_env(row: dict[str, str], tmp_path: Path) -> dict[str, str | None]:
    variables = dict(span.split("=", 1) for span in _spans(row["variables"]))
    default = _spans(row["default branch"])
    system = row["CI build"].split()[0]
    if system == "GitHub":
        ref = variables.pop("GITHUB_REF")
        event = variables.pop("GITHUB_EVENT_NAME", "push")
        return github_env(
            tmp_path,
            event=event,
            ref=ref,
            default_branch=default[0] if default else None,
            **variables,
        )
    if system == "GitLab":
        base = {"CI": "true", "GITLAB_CI": "true", "CI_COMMIT_SHA": SHA}
        if default:
            base["CI_DEFAULT_BRANCH"] = default[0]
        return _complete({**base, **variables})
    assert system == "CodeBuild", row
    base = {"CODEBUILD_BUILD_ID": "b:1", "CODEBUILD_RESOLVED_SOURCE_VERSION": SHA}
    if default:
        base["SHIPIT_DEFAULT_BRANCH"] = default[0]
    return _complete({**base, **variables})


def test_readme_ci_table_matches_the_code(project: Path, fake_api: FakeAPI, tmp_path: Path) -> None:
    rows = readme_table("## Tag rules")
    assert len(rows) >= 8, "the README's table of CI events and tags is missing"
    systems = {row["CI build"].split()[0] for row in rows}
    assert systems == {"GitHub", "GitLab", "CodeBuild"}
    for row in rows:
        expected = sorted(_spans(row["tags (besides sha-COMMIT)"]))
        assert sorted(built_tags(_row_env(row, tmp_path))) == expected, row
