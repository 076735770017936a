"""What the CI system says about the build (GitHub Actions, GitLab CI, AWS CodeBuild) and its outputs.

CI variables feed the same tag rules as git does: the commit, a sanitised branch tag, a
merge/pull-request tag (`pr-42`) and a git tag's version. `latest` follows docker/metadata-action:
only the default branch and release tags get it. Results go to GITHUB_OUTPUT and
GITHUB_STEP_SUMMARY.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipit.adapters.git import GitInfo
from shipit.reference import SEMVER_RE, sanitise_tag


@dataclass(frozen=True)
class CiInfo:
    """The CI system and the commit, branch, git tag and change request it is building."""

    system: str
    sha: str | None = None
    branch: str | None = None
    pull_request: str | None = None
    git_tag: str | None = None
    # The repository's default branch, when the CI system says (GitHub's event payload,
    # GitLab's CI_DEFAULT_BRANCH, or SHIPIT_DEFAULT_BRANCH anywhere).
    default_branch: str | None = None

    def version(self) -> str | None:
        """The version a `vX.Y.Z`/`X.Y.Z` git tag names (pre-releases too), else None."""
        if self.git_tag and not self.pull_request and SEMVER_RE.match(self.git_tag):
            return self.git_tag.removeprefix("v")
        return None

    def latest(self) -> bool:
        """`latest` as metadata-action gives it: a release tag or the default branch only."""
        if self.pull_request:
            return False
        if self.git_tag:
            match = SEMVER_RE.match(self.git_tag)
            return match is not None and not match["pre"]
        return bool(self.branch and self.default_branch and self.branch == self.default_branch)

    def tags(self) -> list[str]:
        """Extra tags: pr-N, a git tag that is not a version, or the branch (sanitised)."""
        if self.pull_request:
            return [f"pr-{self.pull_request}"]
        if self.git_tag:
            return [] if self.version() else [sanitise_tag(self.git_tag)]
        return [sanitise_tag(self.branch)] if self.branch else []


def _event_payload(path: str | None) -> dict[str, Any]:
    """The GitHub event payload (GITHUB_EVENT_PATH), or {} when missing or unreadable."""
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _github(env: Mapping[str, str]) -> CiInfo:
    ref = env.get("GITHUB_REF", "")
    event = env.get("GITHUB_EVENT_NAME", "")
    payload = _event_payload(env.get("GITHUB_EVENT_PATH"))
    repository = payload.get("repository")
    default = repository.get("default_branch") if isinstance(repository, dict) else None
    pr = re.match(r"refs/pull/(\d+)/", ref)
    number = pr.group(1) if pr else None
    if number is None and event.startswith("pull_request"):
        pull = payload.get("pull_request")
        found = payload.get("number") or (pull.get("number") if isinstance(pull, dict) else None)
        number = str(found) if found else None
    git_tag = ref[len("refs/tags/") :] if ref.startswith("refs/tags/") else None
    branch = None
    if number is not None:
        branch = env.get("GITHUB_HEAD_REF") or None
    elif ref.startswith("refs/heads/"):
        branch = ref[len("refs/heads/") :]
    elif not ref and not git_tag:
        branch = env.get("GITHUB_REF_NAME") or None
    return CiInfo(
        "github",
        env.get("GITHUB_SHA"),
        branch,
        number,
        git_tag,
        env.get("SHIPIT_DEFAULT_BRANCH") or (str(default) if default else None),
    )


def _gitlab(env: Mapping[str, str]) -> CiInfo:
    return CiInfo(
        "gitlab",
        env.get("CI_COMMIT_SHA"),
        env.get("CI_COMMIT_BRANCH") or env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"),
        env.get("CI_MERGE_REQUEST_IID") or None,
        env.get("CI_COMMIT_TAG") or None,
        env.get("SHIPIT_DEFAULT_BRANCH") or env.get("CI_DEFAULT_BRANCH") or None,
    )


def _codebuild(env: Mapping[str, str]) -> CiInfo:
    trigger = env.get("CODEBUILD_WEBHOOK_TRIGGER", "")
    head = env.get("CODEBUILD_WEBHOOK_HEAD_REF", "")
    pr = re.match(r"pr/(\d+)", trigger)
    branch = trigger[len("branch/") :] if trigger.startswith("branch/") else None
    if branch is None and head.startswith("refs/heads/"):
        branch = head[len("refs/heads/") :]
    git_tag = trigger[len("tag/") :] if trigger.startswith("tag/") else None
    if git_tag is None and head.startswith("refs/tags/"):
        git_tag = head[len("refs/tags/") :]
    sha = env.get("CODEBUILD_RESOLVED_SOURCE_VERSION")
    return CiInfo(
        "codebuild",
        sha if sha and re.fullmatch(r"[0-9a-f]{40}", sha) else None,
        None if pr or git_tag else branch,
        pr.group(1) if pr else None,
        None if pr else git_tag,
        env.get("SHIPIT_DEFAULT_BRANCH") or None,
    )


def detect(env: Mapping[str, str]) -> CiInfo | None:
    """The CI system from its variables, or None outside CI."""
    if env.get("GITHUB_ACTIONS") == "true":
        return _github(env)
    if env.get("GITLAB_CI") == "true":
        return _gitlab(env)
    if env.get("CODEBUILD_BUILD_ID"):
        return _codebuild(env)
    return None


def merge_git(git: GitInfo | None, ci: CiInfo | None) -> GitInfo | None:
    """Git's own answer, with the CI's commit when the checkout has none (e.g. a source zip)."""
    if git is not None or ci is None or not ci.sha:
        return git
    return GitInfo(sha=ci.sha, branch=ci.branch, remote_url=None)


def build_metadata(
    image_id: str | None, names: Sequence[str], pushed: Sequence[tuple[str, str]] = ()
) -> dict[str, str]:
    """What buildx writes to --metadata-file, for the keys that apply to shipit's build.

    `containerimage.config.digest` is the image id; after a push, `containerimage.digest` is the
    manifest digest the registry serves and `image.name` the pushed references; before one,
    `image.name` is the local names. `pushed` is (reference, digest) pairs.
    """
    metadata: dict[str, str] = {}
    if image_id:
        metadata["containerimage.config.digest"] = image_id
    if pushed:
        metadata["containerimage.digest"] = pushed[0][1]
        metadata["image.name"] = ",".join(dict.fromkeys(ref for ref, _ in pushed))
    elif names:
        metadata["image.name"] = ",".join(names)
    return metadata


def write_github_outputs(
    env: Mapping[str, str],
    *,
    image: str,
    digest: str | None,
    tags: Sequence[str],
    references: Sequence[str],
    rows: Sequence[tuple[str, str, str]] = (),
    image_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """GITHUB_OUTPUT: image, digest, tags (fully qualified), references, and build-push-action's
    imageid and metadata; a table in GITHUB_STEP_SUMMARY."""
    output = env.get("GITHUB_OUTPUT")
    if output:
        values = {
            "image": image,
            "imageid": image_id or "",
            "digest": digest or "",
            "tags": "\n".join(tags),
            "references": "\n".join(references),
            "metadata": json.dumps(dict(metadata or {}), sort_keys=True),
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
