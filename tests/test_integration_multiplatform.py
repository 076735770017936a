"""Multi-platform images end to end: a two-platform build, push as one image index, the CI
matrix flow (one push per platform, then the join), ECR through moto, the emulator check.

Every index is checked by independent clients: skopeo (`inspect --raw` for the index,
`--override-arch arm64` for the arm64 config) and the docker CLI, which pulls the tag and runs
its arm64 entry under QEMU.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import test_integration_dockerhub as dockerhub_tests
from tests.conftest import BUSYBOX_IMAGE, Cleanup, run_shipit
from tests.support import missing_binaries
from tests.support.moto_server import moto_server_missing, running_moto_server
from tests.support.registry import (
    Registry,
    ecr_environment_ready,
    ecr_setup,
    running_ecr_registry,
    running_registry,
)

pytestmark = pytest.mark.integration

ARM64_IMAGE = os.environ.get("SHIPIT_BUSYBOX_ARM64_IMAGE", "shipit.local/busybox-arm64:latest")
DOCKER_CLI = "/usr/bin/docker"  # the 20.10 CLI: BuildKit with DOCKER_BUILDKIT=1
PLATFORMS = "linux/amd64,linux/arm64"
# The tags `--version X.Y.Z` selects (the project is not a git work tree: no sha- tag).
RELEASE_TAGS = {
    v: [v, v.rsplit(".", 1)[0], v.split(".")[0], "latest"]
    for v in ("1.0.0", "2.0.0", "3.1.4", "4.0.0")
}
LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
# `-v`'s file sync line of each platform: the platform and how many files the engine asked for.
SYNCED = re.compile(r"\[(linux/\w+)\] context sent through file sync: .*?, (\d+) files? \(")


@dataclass
class MultiProject:
    """A build context whose base image is chosen by the target architecture."""

    path: Path
    name: str
    base: str
    cleanup: Cleanup
    image_ids: list[str]

    def docker_build(self, tag: str, platform: str, *, marker: str = "one") -> str:
        """Build one platform with the docker CLI's BuildKit (test setup only); its image id."""
        (self.path / "marker.txt").write_text(marker + "\n")
        reference = f"{self.name}:{tag}"
        result = subprocess.run(
            [DOCKER_CLI, "build", "-q", "--platform", platform, "-t", reference, str(self.path)],
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
            check=False,
        )
        assert result.returncode == 0, result.stderr
        self.cleanup.images.append(reference)
        self.image_ids.append(result.stdout.strip())
        return result.stdout.strip()

    def build_both(self, tags: list[str], *, marker: str = "one") -> dict[str, str]:
        """NAME:TAG-linux-amd64 and NAME:TAG-linux-arm64 for each tag, as `shipit build
        --platform linux/amd64,linux/arm64` leaves them; image id per platform."""
        ids = {}
        for platform in PLATFORMS.split(","):
            suffix = platform.replace("/", "-")
            ids[platform] = self.docker_build(f"{tags[0]}-{suffix}", platform, marker=marker)
            for tag in tags[1:]:
                self.cleanup.run("tag", ids[platform], f"{self.name}:{tag}-{suffix}")
                self.cleanup.images.append(f"{self.name}:{tag}-{suffix}")
        return ids


def _emulation_missing() -> str | None:
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    try:
        if (binfmt / "qemu-aarch64").read_text().splitlines()[0] != "enabled":
            return "qemu-aarch64 is registered but disabled (run .ci/setup)"
        if (binfmt / "status").read_text().splitlines()[0] != "enabled":
            return "binfmt_misc emulation is switched off (a build benchmark running?)"
    except OSError:
        return "no qemu-aarch64 emulator registered (run .ci/setup: qemu-user-static)"
    return None


@pytest.fixture
def multi_project(
    tmp_path: Path, unique: str, docker_api: Any, engine_cleanup: Cleanup
) -> Iterator[MultiProject]:
    import docker.errors

    reason = missing_binaries("docker-registry", "skopeo") or _emulation_missing()
    if reason or not Path(DOCKER_CLI).exists():
        pytest.skip(reason or f"{DOCKER_CLI} (the Debian docker.io CLI) is missing")
    for image in (BUSYBOX_IMAGE, ARM64_IMAGE):
        try:
            docker_api.inspect_image(image)
        except docker.errors.ImageNotFound:
            pytest.skip(f"base image {image} is missing: run .ci/setup")
    base = f"mp-{unique}-base"
    for image, arch in ((BUSYBOX_IMAGE, "amd64"), (ARM64_IMAGE, "arm64")):
        docker_api.tag(image, base, arch)
        engine_cleanup.images.append(f"{base}:{arch}")
    context = tmp_path / "app"
    context.mkdir()
    # TARGETARCH is BuildKit's automatic platform argument (declaring it would blank it here).
    (context / "Dockerfile").write_text(
        f"FROM {base}:${{TARGETARCH}}\n"
        "RUN busybox uname -m > /arch && mkdir -p /www && busybox uname -m > /www/health\n"
        "COPY marker.txt /marker.txt\n"
        "EXPOSE 8080\n"
        'CMD ["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]\n'
    )
    (context / "marker.txt").write_text("one\n")
    project = MultiProject(context, f"mp-{unique}", base, engine_cleanup, [])
    yield project
    # Pulls and pushes leave digest references (REPO@sha256:...) that untagging keeps alive.
    for image_id in project.image_ids:
        with contextlib.suppress(Exception):
            docker_api.remove_image(image_id, force=True)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path / "registry") as running:
        yield running


def _skopeo(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _index_platforms(index: dict[str, Any]) -> dict[str, str]:
    return {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in index["manifests"]
    }


def _forget(cleanup: Cleanup, references: list[str]) -> None:
    for reference in references:
        cleanup.images.append(reference)


def _push(project: MultiProject, registry: Registry, *args: str) -> dict[str, Any]:
    result = run_shipit(
        "push", "--registry", registry.address, "--name", project.name, *args, "--json",
        cwd=project.path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = dict(json.loads(result.stdout))
    _forget(project.cleanup, [p["reference"] for p in payload.get("platform_images", [])])
    _forget(project.cleanup, [p["reference"] for p in payload.get("pushed", [])])
    return payload


# ---------------------------------------------------------------- build


def test_build_two_platforms_keeps_each_under_a_suffixed_tag(
    multi_project: MultiProject, docker_api: Any
) -> None:
    name = multi_project.name
    for tag in ("t1-linux-amd64", "t1-linux-arm64", "buildcache"):
        multi_project.cleanup.images.append(f"{name}:{tag}")
    result = run_shipit(
        "build", str(multi_project.path), "--name", name, "--tag", "t1", "--no-latest",
        "--platform", PLATFORMS, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    built = json.loads(result.stdout)
    assert [p["platform"] for p in built["platforms"]] == ["linux/amd64", "linux/arm64"]
    for entry, arch, machine in zip(
        built["platforms"], ("amd64", "arm64"), ("x86_64", "aarch64"), strict=True
    ):
        assert entry["architecture"] == arch
        reference = f"{name}:t1-linux-{arch}"
        assert entry["tags"] == [reference]
        multi_project.image_ids.append(entry["image_id"])
        inspected = docker_api.inspect_image(reference)
        assert inspected["Id"] == entry["image_id"]
        assert inspected["Architecture"] == arch
        # The RUN step ran on (or emulated) that architecture.
        ran = multi_project.cleanup.run("run", "--rm", reference, "cat", "/arch")
        assert ran.stdout.strip() == machine
    # No plain tag: the engine's store holds one platform per tag.
    assert multi_project.cleanup.run("image", "inspect", f"{name}:t1", check=False).returncode != 0


def test_rebuilding_two_platforms_sends_each_platforms_files_once(
    multi_project: MultiProject,
) -> None:
    """Each platform copies its own file (`COPY blob-${TARGETARCH}`), as images of prebuilt
    binaries do. Both builds run side by side, each with its own shared key: the engine keeps a
    copy of the context per platform, so a rebuild of unchanged files asks for none of them
    (with one key, each build got either copy and re-fetched the other platform's file).
    The emulated build starts first."""
    name = multi_project.name
    for arch in ("amd64", "arm64"):
        (multi_project.path / f"blob-{arch}").write_bytes(os.urandom(256 * 1024))
        multi_project.cleanup.images.append(f"{name}:latest-linux-{arch}")
    (multi_project.path / "Dockerfile").write_text(
        f"FROM {multi_project.base}:${{TARGETARCH}}\nARG TARGETARCH\nCOPY blob-${{TARGETARCH}} /blob\n"
    )
    sent: list[list[str]] = []
    for _ in range(3):
        result = run_shipit(
            "build", str(multi_project.path), "--name", name, "--platform", PLATFORMS, "-v",
            env={"SHIPIT_BUILD_CONTEXT": "sync"},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        sent.append(sorted(SYNCED.findall(result.stderr)))
        # The emulated build leads: the native one starts once arm64's first step has begun.
        lines = [line for line in result.stderr.splitlines() if re.search(r"\] #\d+ ", line)]
        first_amd64 = next(i for i, line in enumerate(lines) if "[linux/amd64]" in line)
        assert any(
            "[linux/arm64]" in line and "[1/2] FROM" in line for line in lines[:first_amd64]
        ), lines
    assert sent[0] == [("linux/amd64", "1"), ("linux/arm64", "1")]
    assert sent[1] == sent[2] == [("linux/amd64", "0"), ("linux/arm64", "0")]


def test_build_for_a_platform_without_emulator_fails_before_building(
    multi_project: MultiProject,
) -> None:
    # .ci/setup leaves only qemu-aarch64 enabled: s390x has no emulator here.
    s390x = Path("/proc/sys/fs/binfmt_misc/qemu-s390x")
    if s390x.exists() and s390x.read_text().startswith("enabled"):
        pytest.skip("this machine emulates s390x (qemu-s390x is enabled): nothing to refuse")
    result = run_shipit(
        "build", str(multi_project.path), "--name", multi_project.name,
        "--platform", "linux/amd64,linux/s390x",
    )  # fmt: skip
    assert result.returncode == 5, result.stderr
    assert "cannot build linux/s390x" in result.stderr
    assert "qemu-user-static" in result.stderr and "binfmt" in result.stderr
    assert "Traceback" not in result.stderr
    assert (
        multi_project.cleanup.run(
            "image", "inspect", f"{multi_project.name}:latest-linux-amd64", check=False
        ).returncode
        != 0
    )  # nothing was built


# ---------------------------------------------------------------- push: one index per tag


def test_two_platform_push_publishes_one_index_checked_by_skopeo_and_docker(
    multi_project: MultiProject, registry: Registry
) -> None:
    ids = multi_project.build_both(RELEASE_TAGS["1.0.0"])
    payload = _push(multi_project, registry, "--version", "1.0.0", "--platform", PLATFORMS)
    repo = f"{registry.address}/{multi_project.name}"
    pushed = payload["pushed"]
    assert [p["reference"] for p in pushed] == [
        f"{repo}:1.0.0",
        f"{repo}:1.0",
        f"{repo}:1",
        f"{repo}:latest",
    ]
    digests = {p["digest"] for p in pushed}
    assert len(digests) == 1
    (digest,) = digests

    raw = _skopeo("--raw", f"docker://{repo}:1.0.0")
    assert raw["mediaType"] == LIST_TYPE
    entries = _index_platforms(raw)
    assert set(entries) == {"linux/amd64", "linux/arm64"}
    assert registry.manifest_digest(multi_project.name, "1.0.0") == digest
    by_platform = {p["platform"]: p["digest"] for p in payload["platform_images"]}
    assert entries == by_platform

    arm = _skopeo("--override-arch", "arm64", f"docker://{repo}:1.0.0")
    assert arm["Architecture"] == "arm64"
    arm_manifest = _skopeo("--raw", f"docker://{repo}@{entries['linux/arm64']}")
    assert arm["Layers"] == [layer["digest"] for layer in arm_manifest["layers"]]
    config = _skopeo("--config", "--override-arch", "arm64", f"docker://{repo}:latest")
    assert config["architecture"] == "arm64"
    amd = _skopeo("--override-arch", "amd64", f"docker://{repo}:latest")
    assert amd["Architecture"] == "amd64"
    assert amd["Layers"] != arm["Layers"]

    # The docker CLI pulls the index and runs its arm64 entry under emulation.
    multi_project.cleanup.images.append(f"{repo}:1.0.0")
    multi_project.cleanup.run("image", "rm", f"{repo}:1.0.0", check=False)
    ran = multi_project.cleanup.run(
        "run", "--rm", "--platform", "linux/arm64", f"{repo}:1.0.0", "busybox", "uname", "-m"
    )
    assert ran.stdout.strip() == "aarch64"

    # shipit inspect --remote lists the tag's platforms with their image ids.
    shown = run_shipit("inspect", f"{repo}:1.0.0", "--remote", "--json", cwd=multi_project.path)
    assert shown.returncode == 0, shown.stderr
    remote = json.loads(shown.stdout)
    assert remote["index"] is True and remote["digest"] == digest
    assert {p["platform"]: p["image_id"] for p in remote["platforms"]} == ids
    assert {p["platform"]: p["digest"] for p in remote["platforms"]} == entries

    # Pushing again changes nothing: every index is reported up to date.
    again = _push(multi_project, registry, "--version", "1.0.0", "--platform", PLATFORMS)
    assert {p["status"] for p in again["pushed"]} == {"unchanged"}
    assert {p["digest"] for p in again["pushed"]} == {digest}


def test_release_tag_index_is_protected_unless_allow_overwrite(
    multi_project: MultiProject, registry: Registry
) -> None:
    multi_project.build_both(RELEASE_TAGS["2.0.0"])
    first = _push(multi_project, registry, "--version", "2.0.0", "--platform", PLATFORMS)
    old = first["pushed"][0]["digest"]
    multi_project.build_both(RELEASE_TAGS["2.0.0"], marker="two")  # different images, same tags
    args = ["push", "--registry", registry.address, "--name", multi_project.name]
    refused = run_shipit(
        *args, "--version", "2.0.0", "--platform", PLATFORMS, cwd=multi_project.path
    )
    assert refused.returncode == 6, refused.stderr
    assert "refusing to overwrite" in refused.stderr
    assert registry.manifest_digest(multi_project.name, "2.0.0") == old
    forced = _push(
        multi_project, registry, "--version", "2.0.0", "--platform", PLATFORMS, "--allow-overwrite"
    )
    new = forced["pushed"][0]["digest"]
    assert new != old
    assert registry.manifest_digest(multi_project.name, "2.0.0") == new


def test_smoke_platform_runs_the_arm64_image_under_emulation(multi_project: MultiProject) -> None:
    multi_project.build_both(["latest"])
    result = run_shipit(
        "smoke", "--name", multi_project.name, "--platform", "linux/arm64", "--path", "/health",
        "--json", cwd=multi_project.path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["image"] == f"{multi_project.name}:latest-linux-arm64"
    wrong = run_shipit(
        "smoke", "--name", multi_project.name, "--platform", "linux/s390x", cwd=multi_project.path
    )
    assert wrong.returncode == 5, wrong.stderr
    assert "qemu-user-static" in wrong.stderr


def test_release_builds_and_publishes_both_platforms(
    multi_project: MultiProject, registry: Registry
) -> None:
    name = multi_project.name
    for tag in ("5.0.0", "5.0", "5"):
        for suffix in ("linux-amd64", "linux-arm64"):
            multi_project.cleanup.images.append(f"{name}:{tag}-{suffix}")
    result = run_shipit(
        "release", str(multi_project.path), "--registry", registry.address, "--name", name,
        "--version", "5.0.0", "--no-latest", "--platform", PLATFORMS, "--json",
        cwd=multi_project.path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    built = {p["platform"]: p for p in payload["build"]["platforms"]}
    assert {p: b["architecture"] for p, b in built.items()} == {
        "linux/amd64": "amd64",
        "linux/arm64": "arm64",
    }
    multi_project.image_ids.extend(b["image_id"] for b in built.values())
    _forget(multi_project.cleanup, [p["reference"] for p in payload["platform_images"]])
    repo = f"{registry.address}/{name}"
    assert [p["reference"] for p in payload["pushed"]] == [
        f"{repo}:{t}" for t in ("5.0.0", "5.0", "5")
    ]
    raw = _skopeo("--raw", f"docker://{repo}:5.0.0")
    assert set(_index_platforms(raw)) == set(built)
    arm = _skopeo("--config", "--override-arch", "arm64", f"docker://{repo}:5.0.0")
    assert arm["architecture"] == "arm64"
    # A different build released under the same version (the release tags exist now: both
    # platforms are built first and compared with the index) is refused before any push.
    before = {t: registry.manifest_digest(name, t) for t in ("5.0.0", "5.0.0-linux-arm64")}
    (multi_project.path / "marker.txt").write_text("changed\n")
    again = run_shipit(
        "release", str(multi_project.path), "--registry", registry.address, "--name", name,
        "--version", "5.0.0", "--no-latest", "--platform", PLATFORMS, cwd=multi_project.path,
    )  # fmt: skip
    assert again.returncode == 6, again.stderr
    assert "refusing to overwrite" in again.stderr
    assert {t: registry.manifest_digest(name, t) for t in before} == before


# ---------------------------------------------------------------- the CI matrix flow


def test_matrix_pushes_then_merge_give_the_same_index(
    multi_project: MultiProject, registry: Registry, tmp_path: Path
) -> None:
    multi_project.build_both(RELEASE_TAGS["3.1.4"])
    one_shot = _push(multi_project, registry, "--version", "3.1.4", "--platform", PLATFORMS)
    with running_registry(tmp_path / "matrix") as matrix:
        # Each runner pushes its own platform only: no index yet.
        for platform in PLATFORMS.split(","):
            runner = _push(
                multi_project, matrix, "--version", "3.1.4", "--platform", platform,
                "--platform-only",
            )  # fmt: skip
            assert {p["platform"] for p in runner["platform_images"]} == {platform}
        assert matrix.manifest_digest(multi_project.name, "3.1.4") is None
        # The join job needs no engine image: it reads the registry.
        merged = _push(
            multi_project, matrix, "--version", "3.1.4", "--platform", PLATFORMS, "--merge"
        )
        assert [p["digest"] for p in merged["pushed"]] == [p["digest"] for p in one_shot["pushed"]]
        assert {p["status"] for p in merged["pushed"]} == {"pushed"}
        raw = _skopeo("--raw", f"docker://{matrix.address}/{multi_project.name}:3.1.4")
        assert set(_index_platforms(raw)) == {"linux/amd64", "linux/arm64"}
        # Joining again is a no-op.
        again = _push(
            multi_project, matrix, "--version", "3.1.4", "--platform", PLATFORMS, "--merge"
        )
        assert {p["status"] for p in again["pushed"]} == {"unchanged"}


def test_merge_refuses_an_entry_of_the_wrong_architecture(
    multi_project: MultiProject, registry: Registry
) -> None:
    ids = multi_project.build_both(["latest"])
    # A runner that mislabels its image: the amd64 image pushed as the arm64 entry.
    repo = f"{registry.address}/{multi_project.name}"
    for suffix in ("linux-amd64", "linux-arm64"):
        multi_project.cleanup.run("tag", ids["linux/amd64"], f"{repo}:edge-{suffix}")
        multi_project.cleanup.images.append(f"{repo}:edge-{suffix}")
        multi_project.cleanup.run("push", f"{repo}:edge-{suffix}")
    args = ["push", "--registry", registry.address, "--name", multi_project.name]
    result = run_shipit(
        *args, "--no-latest", "--tag", "edge", "--platform", PLATFORMS, "--merge",
        cwd=multi_project.path,
    )  # fmt: skip
    assert result.returncode == 6, result.stderr
    assert "is a linux/amd64 image, not linux/arm64" in result.stderr
    assert "Traceback" not in result.stderr
    assert registry.manifest_digest(multi_project.name, "edge") is None


def test_platform_only_push_adopts_a_single_platform_build(
    multi_project: MultiProject, registry: Registry
) -> None:
    # A native runner ran plain `shipit build --platform linux/arm64`: NAME:edge, arm64.
    multi_project.docker_build("edge", "linux/arm64")
    args = ["--no-latest", "--tag", "edge", "--platform", "linux/arm64", "--platform-only"]
    payload = _push(multi_project, registry, *args)
    assert [p["reference"] for p in payload["pushed"]] == [
        f"{registry.address}/{multi_project.name}:edge-linux-arm64"
    ]
    multi_project.cleanup.images.append(f"{multi_project.name}:edge-linux-arm64")
    # The same build offered as amd64 is refused before anything is pushed.
    wrong = run_shipit(
        "push", "--registry", registry.address, "--name", multi_project.name, "--no-latest",
        "--tag", "edge", "--platform", "linux/amd64", "--platform-only", cwd=multi_project.path,
    )  # fmt: skip
    assert wrong.returncode == 2, wrong.stderr
    assert "is a linux/arm64 image, not linux/amd64" in wrong.stderr
    # A plain single-platform push that names a platform gets the same check.
    plain = run_shipit(
        "push", "--registry", registry.address, "--name", multi_project.name, "--no-latest",
        "--tag", "edge", "--platform", "linux/amd64", cwd=multi_project.path,
    )  # fmt: skip
    assert plain.returncode == 2, plain.stderr
    assert "is a linux/arm64 image, not linux/amd64" in plain.stderr
    assert registry.manifest_digest(multi_project.name, "edge") is None


# ---------------------------------------------------------------- ECR through moto


@pytest.fixture
def ecr_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], Registry]]:
    reason = ecr_environment_ready() or moto_server_missing()
    if reason:
        pytest.skip(f"ECR end-to-end environment not ready: {reason}")
    setup = ecr_setup()
    assert setup is not None
    with (
        running_moto_server() as moto,
        running_ecr_registry(tmp_path / "ecr-registry", setup.tls_dir, setup.host) as ecr,
    ):
        yield moto.env(), ecr


def test_ecr_matrix_and_one_shot_publish_the_same_index(
    multi_project: MultiProject, ecr_env: tuple[dict[str, str], Registry]
) -> None:
    env, ecr = ecr_env
    multi_project.build_both(RELEASE_TAGS["4.0.0"])
    base = ["push", "--registry", "ecr", "--name", multi_project.name, "--version", "4.0.0"]
    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    cwd = multi_project.path
    for platform in PLATFORMS.split(","):
        runner = run_shipit(
            *base, "--platform", platform, "--platform-only", "--json", env=env, cwd=cwd
        )
        assert runner.returncode == 0, runner.stderr
        _forget(
            multi_project.cleanup, [p["reference"] for p in json.loads(runner.stdout)["pushed"]]
        )
    merged = run_shipit(*base, "--platform", PLATFORMS, "--merge", "--json", env=env, cwd=cwd)
    assert merged.returncode == 0, merged.stderr
    assert "123456789012-auth-token" not in merged.stdout + merged.stderr
    digest = json.loads(merged.stdout)["pushed"][0]["digest"]
    reference = f"docker://{host}/{multi_project.name}:4.0.0"
    raw = _skopeo("--creds", ecr.creds or "", "--raw", reference)
    assert set(_index_platforms(raw)) == {"linux/amd64", "linux/arm64"}
    one_shot = run_shipit(*base, "--platform", PLATFORMS, "--json", env=env, cwd=cwd)
    assert one_shot.returncode == 0, one_shot.stderr
    results = json.loads(one_shot.stdout)
    _forget(multi_project.cleanup, [p["reference"] for p in results["platform_images"]])
    assert {p["digest"] for p in results["pushed"]} == {digest}
    assert {p["status"] for p in results["pushed"]} == {"unchanged"}


# ---------------------------------------------------------------- Docker Hub (the stand-in)

hub = dockerhub_tests.hub  # registry-1.docker.io + auth.docker.io on loopback (CI only)


def test_dockerhub_matrix_pushes_then_merge_publish_the_index(
    multi_project: MultiProject, hub: Any, tmp_path: Path
) -> None:
    multi_project.build_both(["latest"])
    env = {
        "DOCKERHUB_USERNAME": dockerhub_tests.USER,
        "DOCKERHUB_TOKEN": dockerhub_tests.TOKEN,
        "DOCKERHUB_NAMESPACE": dockerhub_tests.ORG,
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
    }
    repo = f"{dockerhub_tests.ORG}/{multi_project.name}"
    base = ["push", "--registry", "dockerhub", "--name", multi_project.name, "--json"]
    for platform in PLATFORMS.split(","):
        runner = run_shipit(
            *base, "--platform", platform, "--platform-only", env=env, cwd=multi_project.path
        )
        assert runner.returncode == 0, runner.stderr
        _forget(
            multi_project.cleanup, [p["reference"] for p in json.loads(runner.stdout)["pushed"]]
        )
    merged = run_shipit(*base, "--platform", PLATFORMS, "--merge", env=env, cwd=multi_project.path)
    assert merged.returncode == 0, merged.stderr
    assert dockerhub_tests.TOKEN not in merged.stdout + merged.stderr
    (published,) = json.loads(merged.stdout)["pushed"]
    assert published["reference"] == f"docker.io/{repo}:latest"
    served, index = hub.manifest(repo, "latest", dockerhub_tests.USER)
    assert served == published["digest"]
    assert hub.skopeo_digest(repo, "latest", dockerhub_tests.USER) == published["digest"]
    assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}
