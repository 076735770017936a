"""The console script's lazy root group behaves exactly like Typer's eager one.

`shipit` (the entry point) builds a command's options only when that command runs; tests
elsewhere drive the eager group through Typer's CliRunner. These tests hold the two equal.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from shipit.cli import app, lazy_command


class Ran:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr


def run_group(group: Any, args: list[str], capsys: pytest.CaptureFixture[str]) -> Ran:
    """Run a root group in-process the way `main()` runs it; capture what it prints."""
    capsys.readouterr()
    try:
        group.main(args, prog_name="shipit")
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return Ran(code, out.out, out.err)


def _eager_names() -> list[str]:
    group: Any = typer.main.get_command(app)
    return list(group.list_commands(None))


@pytest.mark.parametrize("args", [["--help"], ["-h"], []])
def test_root_help_is_the_same(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    eager = run_group(typer.main.get_command(app), args, capsys)
    lazy = run_group(lazy_command(), args, capsys)
    assert lazy.stdout == eager.stdout
    assert lazy.exit_code == eager.exit_code
    assert "Commands:" in lazy.stdout + lazy.stderr
    for name in _eager_names():
        assert f"  {name} " in lazy.stdout + lazy.stderr


def test_version_and_help_build_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    group = lazy_command()
    result = run_group(group, ["--version"], capsys)
    assert result.exit_code == 0
    assert result.stdout.startswith("shipit ")
    assert group.commands == {}
    assert len(group.pending) == len(_eager_names())
    group = lazy_command()
    assert run_group(group, ["--help"], capsys).exit_code == 0
    assert group.commands == {}
    assert len(group.pending) == len(_eager_names())


def test_every_command_has_the_same_options_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    eager: Any = typer.main.get_command(app)
    lazy = lazy_command()
    assert lazy.list_commands(None) == _eager_names()
    for name in _eager_names():
        built = lazy.get_command(None, name)  # type: ignore[arg-type]
        assert built is not None
        assert [p.opts for p in built.params] == [p.opts for p in eager.commands[name].params]
        assert built.help == eager.commands[name].help
        want = run_group(typer.main.get_command(app), [name, "--help"], capsys)
        got = run_group(lazy_command(), [name, "--help"], capsys)
        assert got.stdout == want.stdout, name
    assert set(lazy.commands) == set(_eager_names())


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_group(lazy_command(), ["nope"], capsys)
    assert result.exit_code == 2
    assert "No such command 'nope'" in result.stderr


def test_a_command_runs_through_the_entry_point() -> None:
    """The real console script (lazy group) runs a command with its options."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shipit",
            "iam-policy",
            "--repository",
            "web",
            "--region",
            "eu-west-1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    eager = CliRunner().invoke(app, ["iam-policy", "--repository", "web", "--region", "eu-west-1"])
    assert result.returncode == eager.exit_code == 0, result.stderr
    assert result.stdout == eager.stdout
    assert '"ecr:' in result.stdout


def test_the_entry_point_flushes_its_output_and_keeps_the_exit_code(tmp_path: Any) -> None:
    """What main() prints into a file is all there, and a command's own exit code stands."""
    policy = ["iam-policy", "--repository", "web", "--region", "eu-west-1", "--json"]
    out = tmp_path / "policy.json"
    with out.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "shipit", *policy], stdout=handle, timeout=60, check=False
        )
    assert done.returncode == 0
    assert out.read_text() == CliRunner().invoke(app, policy).stdout
    bad = subprocess.run(
        [sys.executable, "-m", "shipit", "build", "--nope"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "No such option: --nope" in bad.stderr


def test_output_that_cannot_be_written_is_one_error_line_not_a_traceback() -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "shipit", "--version"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == "error: No space left on device\n"
