"""The tag rules and Docker's reference grammar."""

from __future__ import annotations

import pytest

from shipit.errors import UsageError
from shipit.reference import (
    normalise_name,
    parse_registry_target,
    sanitise_tag,
    validate_name,
    validate_tag,
)
from shipit.services.tags import compute_tags, is_release_tag, version_tags


def test_version_adds_major_minor_and_major() -> None:
    assert version_tags("1.2.3") == ["1.2.3", "1.2", "1"]


def test_version_with_v_prefix_is_stripped() -> None:
    assert version_tags("v2.0.10") == ["2.0.10", "2.0", "2"]


def test_prerelease_adds_only_itself() -> None:
    assert version_tags("1.2.3-rc.1") == ["1.2.3-rc.1"]


def test_non_semver_version_is_used_as_is() -> None:
    assert version_tags("2024.01") == ["2024.01"]


def test_version_with_build_metadata_is_rejected() -> None:
    with pytest.raises(UsageError, match="build metadata"):
        version_tags("1.2.3+build.5")


def test_compute_tags_orders_and_deduplicates() -> None:
    tags = compute_tags(explicit=["edge", "latest"], git_sha="0123456789abcdef", version="1.2.3")
    assert tags == ["edge", "latest", "1.2.3", "1.2", "1", "sha-0123456"]


def test_no_latest_drops_latest() -> None:
    assert compute_tags(latest=False, git_sha="abcdef0123") == ["sha-abcdef0"]


def test_compute_tags_validates_explicit_tags() -> None:
    with pytest.raises(UsageError, match="invalid tag '-bad'"):
        compute_tags(explicit=["-bad"])


@pytest.mark.parametrize("tag", ["latest", "1.2.3", "v1", "a" * 128, "feature_x-1.0", "A.b"])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".hidden", "-x", "a" * 129, "has space", "a/b", "a:b", "ü"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(UsageError):
        validate_tag(tag)


@pytest.mark.parametrize("name", ["hello-flask", "team/app", "a.b_c__d", "x--y", "a/b/c"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Hello", "app-", "-app", "a//b", "a_", "app:1", "a b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(UsageError, match="invalid image name"):
        validate_name(name)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("My_App!", "my_app"), ("hello flask", "hello-flask"), ("--x--", "x"), ("!!!", "app")],
)
def test_normalise_name(raw: str, expected: str) -> None:
    assert normalise_name(raw) == expected
    validate_name(normalise_name(raw))


def test_sanitise_tag_for_branches() -> None:
    assert sanitise_tag("feature/Login#2") == "feature-login-2"
    validate_tag(sanitise_tag("feature/Login#2"))


@pytest.mark.parametrize(
    ("value", "host", "path"),
    [
        ("localhost:5000", "localhost:5000", ""),
        ("ghcr.io/acme", "ghcr.io", "acme"),
        ("127.0.0.1:5000/team/sub", "127.0.0.1:5000", "team/sub"),
    ],
)
def test_parse_registry_target(value: str, host: str, path: str) -> None:
    target = parse_registry_target(value)
    assert (target.host, target.path) == (host, path)


@pytest.mark.parametrize("value", ["noport", "ghcr.io/Acme", "bad_host.io", ":5000"])
def test_parse_registry_target_rejects(value: str) -> None:
    with pytest.raises(UsageError):
        parse_registry_target(value)


@pytest.mark.parametrize(
    ("tag", "release"),
    [
        ("1.2.3", True),
        ("1.2.3-rc.1", True),
        ("v1.0.0", True),
        ("1.2", False),
        ("1", False),
        ("latest", False),
        ("main", False),
        ("sha-abc1234", False),
    ],
)
def test_release_tags(tag: str, release: bool) -> None:
    assert is_release_tag(tag) is release
