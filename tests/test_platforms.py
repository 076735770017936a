"""Platform parsing, suffixed tags, emulator checks, and image index building (no engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipit.adapters.image_index import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Entry,
    build_index,
    index_entries,
    publish_index,
)
from shipit.errors import BuildError, ExitCode, RegistryError, UsageError
from shipit.platforms import (
    Emulation,
    Platform,
    check_buildable,
    image_platform,
    parse_platform,
    parse_platforms,
    platform_tag,
    runs_natively,
)
from shipit.services.multiplatform import start_order

ARM64 = Platform("linux", "arm64")
AMD64 = Platform("linux", "amd64")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", AMD64),
        ("linux/x86_64", AMD64),
        ("linux/aarch64", ARM64),
        ("linux/arm64/v8", ARM64),
        ("LINUX/ARM64", ARM64),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
        (" linux/riscv64 ", Platform("linux", "riscv64")),
    ],
)
def test_parse_platform_normalises_spellings(text: str, expected: Platform) -> None:
    assert parse_platform(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("arm64", "expected OS/ARCH"),
        ("linux/", "expected OS/ARCH"),
        ("linux/arm64/v8/x", "expected OS/ARCH"),
        ("windows/amd64", "Linux images"),
        ("linux/sparc", "unknown architecture 'sparc'"),
        ("linux/arm/v3", "unknown variant 'v3'"),
    ],
)
def test_parse_platform_refuses_bad_input_with_usage_error(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_platform(text)
    assert message in info.value.message
    assert info.value.exit_code == ExitCode.USAGE


def test_parse_platforms_keeps_order_and_refuses_duplicates() -> None:
    assert parse_platforms("linux/arm64, linux/amd64") == (ARM64, AMD64)
    assert parse_platforms(["linux/amd64", "linux/arm64,"]) == (AMD64, ARM64)
    assert parse_platforms(None) == ()
    with pytest.raises(UsageError, match="listed twice"):
        parse_platforms("linux/arm64,linux/aarch64")


def test_platform_tag_suffixes_every_part() -> None:
    assert platform_tag("1.2.3", ARM64) == "1.2.3-linux-arm64"
    assert platform_tag("latest", Platform("linux", "arm", "v7")) == "latest-linux-arm-v7"
    with pytest.raises(UsageError):
        platform_tag("x" * 120, ARM64)  # over Docker's 128-character tag limit


def test_platform_matches_default_variants() -> None:
    assert ARM64.matches("linux", "arm64", "v8")
    assert ARM64.matches("linux", "aarch64")
    assert not ARM64.matches("linux", "amd64")
    assert Platform("linux", "arm", "v7").matches("linux", "arm")
    assert not Platform("linux", "arm", "v6").matches("linux", "arm", "v7")


def test_image_platform_reads_engine_and_oci_spellings() -> None:
    assert image_platform({"Architecture": "arm64", "Os": "linux", "Variant": "v8"}) == ARM64
    assert image_platform({"architecture": "amd64", "os": "linux"}) == AMD64


def _binfmt(tmp_path: Path, entries: dict[str, str], status: str = "enabled") -> Path:
    (tmp_path / "status").write_text(status + "\n")
    (tmp_path / "register").write_text("")
    for name, state in entries.items():
        (tmp_path / f"qemu-{name}").write_text(f"{state}\ninterpreter /usr/libexec/x\n")
    return tmp_path


def test_emulation_reads_enabled_handlers_only(tmp_path: Path) -> None:
    emulation = Emulation.read(_binfmt(tmp_path, {"aarch64": "enabled", "arm": "disabled"}))
    assert emulation.enabled == frozenset({"aarch64"})
    assert emulation.runs(ARM64)
    assert not emulation.runs(Platform("linux", "arm", "v7"))


def test_emulation_of_unmounted_binfmt_is_empty(tmp_path: Path) -> None:
    emulation = Emulation.read(tmp_path / "missing")
    assert emulation.enabled == frozenset()
    assert not emulation.runs(ARM64)


def test_check_buildable_allows_native_and_emulated(tmp_path: Path) -> None:
    emulation = Emulation.read(_binfmt(tmp_path, {"aarch64": "enabled"}))
    check_buildable([AMD64, ARM64], engine_os="linux", engine_arch="amd64", emulation=emulation)
    check_buildable(
        [Platform("linux", "386")], engine_os="linux", engine_arch="x86_64", emulation=emulation
    )
    # A remote engine's handlers cannot be read: nothing is refused up front.
    check_buildable(
        [Platform("linux", "s390x")], engine_os="linux", engine_arch="amd64", emulation=None
    )


def test_runs_natively_knows_the_engines_own_and_compatible_architectures() -> None:
    assert runs_natively(AMD64, "x86_64") and runs_natively(ARM64, "aarch64")
    assert runs_natively(Platform("linux", "386"), "amd64")
    assert not runs_natively(ARM64, "amd64") and not runs_natively(AMD64, "arm64")


class _Engine:
    def __init__(self, arch: str) -> None:
        self.arch = arch

    def version(self) -> dict[str, str]:
        return {"Os": "linux", "Arch": self.arch}


@pytest.mark.parametrize(
    ("arch", "platforms", "leaders"),
    [
        ("amd64", [AMD64, ARM64], ["linux/arm64"]),
        ("arm64", [AMD64, ARM64], ["linux/amd64"]),
        # Nobody to lead: all emulated, or all native.
        ("amd64", [ARM64, Platform("linux", "s390x")], []),
        ("amd64", [AMD64, Platform("linux", "386")], []),
    ],
)
def test_emulated_builds_lead_the_native_ones(
    arch: str, platforms: list[Platform], leaders: list[str]
) -> None:
    order = start_order(platforms, _Engine(arch))  # type: ignore[arg-type]
    assert [str(p) for p in platforms if order.leads(str(p))] == leaders


def test_check_buildable_refuses_without_emulator_naming_qemu(tmp_path: Path) -> None:
    emulation = Emulation.read(_binfmt(tmp_path, {"aarch64": "disabled"}))
    with pytest.raises(BuildError) as info:
        check_buildable([AMD64, ARM64], engine_os="linux", engine_arch="amd64", emulation=emulation)
    assert info.value.exit_code == ExitCode.BUILD
    assert "cannot build linux/arm64" in info.value.message
    assert "no emulator for aarch64" in info.value.message
    assert info.value.hint is not None
    assert "qemu-user-static" in info.value.hint and "binfmt" in info.value.hint


def test_check_buildable_names_switched_off_emulation(tmp_path: Path) -> None:
    emulation = Emulation.read(_binfmt(tmp_path, {"aarch64": "enabled"}, status="disabled"))
    with pytest.raises(BuildError, match="switched off"):
        check_buildable([ARM64], engine_os="linux", engine_arch="amd64", emulation=emulation)


# ---------------------------------------------------------------- image index


def _entry(platform: Platform, n: int, media_type: str = DOCKER_MANIFEST) -> Entry:
    return Entry(platform, f"sha256:{n:064x}", 900 + n, media_type, f"sha256:{n + 100:064x}")


def test_build_index_is_a_docker_list_for_engine_manifests_and_deterministic() -> None:
    entries = [_entry(AMD64, 1), _entry(ARM64, 2)]
    index = build_index(entries)
    assert index.media_type == DOCKER_LIST
    assert build_index(entries) == index  # same entries, same bytes, same digest
    body = json.loads(index.raw)
    assert body["mediaType"] == DOCKER_LIST
    assert [m["platform"] for m in body["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]
    assert [m["size"] for m in body["manifests"]] == [901, 902]
    assert index_entries(index) == [
        (AMD64, entries[0].digest, 901, DOCKER_MANIFEST),
        (ARM64, entries[1].digest, 902, DOCKER_MANIFEST),
    ]
    assert build_index(entries[::-1]).digest != index.digest


def test_build_index_is_oci_when_an_entry_is_oci() -> None:
    index = build_index([_entry(AMD64, 1), _entry(Platform("linux", "arm", "v7"), 2, OCI_MANIFEST)])
    assert index.media_type == OCI_INDEX
    assert json.loads(index.raw)["manifests"][1]["platform"]["variant"] == "v7"


class _Client:
    host = "registry.test"

    def __init__(self, existing: object = None, answer: str | None = None):
        self.existing = existing
        self.answer = answer
        self.put: list[str] = []

    def manifest(self, path: str, reference: str) -> object:
        return self.existing

    def put_manifest(self, path: str, tag: str, manifest: object) -> str:
        self.put.append(tag)
        return self.answer or manifest.digest  # type: ignore[attr-defined]


def test_publish_index_is_a_no_op_for_the_same_index() -> None:
    index = build_index([_entry(AMD64, 1), _entry(ARM64, 2)])
    client = _Client(existing=index)
    assert publish_index(client, "app", "1.2.3", index, protect=True) == "unchanged"  # type: ignore[arg-type]
    assert client.put == []


def test_publish_index_refuses_a_different_release_unless_allowed() -> None:
    old = build_index([_entry(AMD64, 1)])
    new = build_index([_entry(AMD64, 1), _entry(ARM64, 2)])
    client = _Client(existing=old)
    with pytest.raises(RegistryError) as info:
        publish_index(client, "app", "1.2.3", new, protect=True)  # type: ignore[arg-type]
    assert info.value.kind == "overwrite_refused"
    assert info.value.exit_code == ExitCode.REGISTRY
    assert client.put == []
    assert publish_index(client, "app", "1.2.3", new, protect=False) == "pushed"  # type: ignore[arg-type]
    assert client.put == ["1.2.3"]


def test_publish_index_fails_when_the_registry_reports_another_digest() -> None:
    index = build_index([_entry(AMD64, 1)])
    client = _Client(answer="sha256:" + "f" * 64)
    with pytest.raises(RegistryError) as info:
        publish_index(client, "app", "latest", index, protect=False)  # type: ignore[arg-type]
    assert info.value.kind == "digest_mismatch"
