"""What the CI system says about the build (GitHub Actions, GitLab CI, AWS CodeBuild) and its outputs.

CI variables feed the same tag rules as git does: the commit, a sanitised branch tag and a
merge/pull-request tag (`pr-42`). Results go to GITHUB_OUTPUT and GITHUB_STEP_SUMMARY.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shipit.adapters.git import GitInfo
from shipit.reference import sanitise_tag


@dataclass(frozen=True)
class CiInfo:
    """The CI system and the commit, branch and change request it is building."""

    system: str
    sha: str | None = None
    branch: str | None = None
    pull_request: str | None = None

    def tags(self) -> list[str]:
        """Extra tags: the branch (sanitised) and pr-N for a pull/merge request."""
        tags = []
        if self.pull_request:
            tags.append(f"pr-{self.pull_request}")
        elif self.branch:
            tags.append(sanitise_tag(self.branch))
        return tags


def detect(env: Mapping[str, str]) -> CiInfo | None:
    """The CI system from its variables, or None outside CI."""
    if env.get("GITHUB_ACTIONS") == "true":
        ref = env.get("GITHUB_REF", "")
        pr = re.match(r"refs/pull/(\d+)/", ref)
        branch = env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or None
        if ref.startswith("refs/tags/"):
            branch = None
        return CiInfo("github", env.get("GITHUB_SHA"), branch, pr.group(1) if pr else None)
    if env.get("GITLAB_CI") == "true":
        return CiInfo(
            "gitlab",
            env.get("CI_COMMIT_SHA"),
            env.get("CI_COMMIT_BRANCH") or env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"),
            env.get("CI_MERGE_REQUEST_IID"),
        )
    if env.get("CODEBUILD_BUILD_ID"):
        trigger = env.get("CODEBUILD_WEBHOOK_TRIGGER", "")
        head = env.get("CODEBUILD_WEBHOOK_HEAD_REF", "")
        pr = re.match(r"pr/(\d+)", trigger)
        branch = trigger[len("branch/") :] if trigger.startswith("branch/") else None
        if branch is None and head.startswith("refs/heads/"):
            branch = head[len("refs/heads/") :]
        sha = env.get("CODEBUILD_RESOLVED_SOURCE_VERSION")
        return CiInfo(
            "codebuild",
            sha if sha and re.fullmatch(r"[0-9a-f]{40}", sha) else None,
            branch,
            pr.group(1) if pr else None,
        )
    return None


def merge_git(git: GitInfo | None, ci: CiInfo | None) -> GitInfo | None:
    """Git's own answer, with the CI's commit when the checkout has none (e.g. a source zip)."""
    if git is not None or ci is None or not ci.sha:
        return git
    return GitInfo(sha=ci.sha, branch=ci.branch, remote_url=None)


def write_github_outputs(
    env: Mapping[str, str],
    *,
    image: str,
    digest: str | None,
    tags: Sequence[str],
    references: Sequence[str],
    rows: Sequence[tuple[str, str, str]] = (),
) -> None:
    """GITHUB_OUTPUT keys image, digest, tags, references; a table in GITHUB_STEP_SUMMARY."""
    output = env.get("GITHUB_OUTPUT")
    if output:
        values = {
            "image": image,
            "digest": digest or "",
            "tags": "\n".join(tags),
            "references": "\n".join(references),
        }
        with Path(output).open("a", encoding="utf-8") as fh:
            for key, value in values.items():
                if "\n" in value:
                    delimiter = f"shipit_{uuid.uuid4().hex}"
                    fh.write(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")
                else:
                    fh.write(f"{key}={value}\n")
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary and rows:
        lines = [
            f"### shipit: {image}",
            "",
            "| registry | reference | digest |",
            "| --- | --- | --- |",
            *(f"| {r} | `{ref}` | `{d}` |" for r, ref, d in rows),
            "",
        ]
        with Path(summary).open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
