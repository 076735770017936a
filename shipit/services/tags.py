"""The one rule set that turns options, git and CI metadata into image tags (build and push share it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shipit.errors import UsageError
from shipit.reference import SEMVER_RE, validate_tag

__all__ = ["SEMVER_RE", "compute_tags", "is_release_tag", "version_tags"]


def version_tags(version: str) -> list[str]:
    """`1.2.3` -> [1.2.3, 1.2, 1]; a pre-release `1.2.3-rc.1` -> only itself; other values as is."""
    match = SEMVER_RE.match(version)
    if match is None:
        if "+" in version:
            raise UsageError(
                f"invalid version '{version}': build metadata ('+...') cannot be part of a tag"
            )
        return [validate_tag(version)]
    full = version.removeprefix("v")
    if match["pre"]:
        return [validate_tag(full)]
    major, minor = match["major"], match["minor"]
    return [full, f"{major}.{minor}", major]


def is_release_tag(tag: str) -> bool:
    """A full version tag (1.2.3, 1.2.3-rc.1) names one release and must never move silently."""
    return SEMVER_RE.match(tag) is not None


def compute_tags(
    *,
    explicit: Sequence[str] = (),
    latest: bool = True,
    git_sha: str | None = None,
    version: str | None = None,
    extra: Iterable[str] = (),
) -> list[str]:
    """All tags for one build, de-duplicated in a stable order, each validated."""
    tags: list[str] = [validate_tag(t) for t in explicit]
    if version:
        tags.extend(version_tags(version))
    if latest:
        tags.append("latest")
    if git_sha:
        tags.append(f"sha-{git_sha[:7]}")
    tags.extend(validate_tag(t) for t in extra)
    return list(dict.fromkeys(tags))
