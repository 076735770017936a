"""Multi-platform options of `shipit push` through Typer's CliRunner: bad combinations and bad
platforms are usage errors (exit 2) before any engine or registry is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipit.cli import app
from tests.fakes import FakeAPI

runner = CliRunner()
PUSH = ["push", "--registry", "localhost:5000"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--platform-only"], "--platform-only needs --platform"),
        (["--merge"], "--merge needs --platform"),
        (
            ["--platform", "linux/arm64", "--platform-only", "--merge"],
            "--platform-only and --merge exclude each other",
        ),
        (["--platform", "linux/sparc"], "unknown architecture 'sparc'"),
        (["--platform", "linux/arm64,linux/aarch64"], "listed twice"),
        (["--platform", "arm64"], "expected OS/ARCH"),
    ],
)
def test_push_platform_options_are_checked_before_any_contact(
    project: Path, fake_api: FakeAPI, args: list[str], message: str
) -> None:
    result = runner.invoke(app, [*PUSH, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not [c for c in fake_api.calls if c[0] in ("push", "inspect_image")]


def test_multi_platform_push_without_a_multi_platform_build_says_what_to_run(
    project: Path, fake_api: FakeAPI
) -> None:
    result = runner.invoke(app, [*PUSH, "--platform", "linux/amd64,linux/arm64"])
    assert result.exit_code == 2, result.output
    assert "demo:latest-linux-amd64" in result.output
    assert "shipit build --platform linux/amd64" in result.output


def test_multi_platform_push_refuses_push_cache(project: Path, fake_api: FakeAPI) -> None:
    args = [*PUSH, "--platform", "linux/amd64,linux/arm64", "--push-cache"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "--push-cache works with single-platform builds only" in result.output


def test_merge_dry_run_lists_each_index_and_contacts_nothing(
    project: Path, fake_api: FakeAPI
) -> None:
    args = [*PUSH, "--platform", "linux/amd64,linux/arm64", "--merge", "--dry-run", "--tag", "v1"]
    result = runner.invoke(app, [*args, "--no-latest"])
    assert result.exit_code == 0, result.output
    assert "would publish localhost:5000/demo:v1 as an index of linux/amd64, linux/arm64" in (
        result.output
    )
    assert all(c[0] != "push" for c in fake_api.calls)


@pytest.fixture
def no_emulators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine whose binfmt_misc has no QEMU handler registered."""
    binfmt = tmp_path / "binfmt_misc"
    binfmt.mkdir()
    (binfmt / "status").write_text("enabled\n")
    monkeypatch.setattr("shipit.platforms.BINFMT_DIR", binfmt)


@pytest.mark.parametrize("command", ["build", "smoke"])
def test_a_platform_without_emulator_fails_before_the_engine_builds_or_runs(
    project: Path, fake_api: FakeAPI, no_emulators: None, command: str
) -> None:
    platforms = "linux/amd64,linux/arm64" if command == "build" else "linux/arm64"
    result = runner.invoke(app, [command, "--platform", platforms])
    assert result.exit_code == 5, result.output
    assert "cannot build linux/arm64 on this linux/amd64 engine" in result.output
    assert "no emulator for aarch64 is registered" in result.output
    assert "qemu-user-static" in result.output and "binfmt-support" in result.output
    assert "Traceback" not in result.output
    assert not [c for c in fake_api.calls if c[0] in ("build", "_post", "create_container")]


@pytest.fixture
def arm64_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine whose binfmt_misc runs arm64 binaries through QEMU."""
    binfmt = tmp_path / "binfmt_misc"
    binfmt.mkdir()
    (binfmt / "status").write_text("enabled\n")
    (binfmt / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/x\n")
    monkeypatch.setattr("shipit.platforms.BINFMT_DIR", binfmt)


def test_platforms_building_side_by_side_keep_a_context_copy_each(
    project: Path, fake_api: FakeAPI, arm64_emulator: None
) -> None:
    sync = {"SHIPIT_BUILD_CONTEXT": "sync"}
    single = runner.invoke(app, ["build", "--platform", "linux/arm64"], env=sync)
    assert single.exit_code == 0, single.output
    both = runner.invoke(app, ["build", "--platform", "linux/amd64,linux/arm64"], env=sync)
    assert both.exit_code == 0, both.output
    docker_key, *platform_keys = [s.shared_key for s in fake_api.sessions]
    # One build at a time shares the key the docker CLI would send for the directory; builds
    # running side by side each get one, so the engine keeps a copy of the context per platform.
    assert len(docker_key) == 64
    assert len(platform_keys) == 2 and len({docker_key, *platform_keys}) == 3
    again = runner.invoke(app, ["build", "--platform", "linux/amd64,linux/arm64"], env=sync)
    assert again.exit_code == 0, again.output
    assert sorted(s.shared_key for s in fake_api.sessions[3:]) == sorted(platform_keys)
