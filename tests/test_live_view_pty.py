"""The push live view on a real terminal (a pseudo-terminal), read back as a screen.

`shipit push` runs in a subprocess against the fake engine and registries
(tests/support/fake_cli.py) with stderr on a pty. What it wrote is replayed through a small
terminal model (cursor movement, line erase), so the test sees the final screen as a user
does: each registry on its own line with finished bars at 100%, and every `pushed`/`tagged`
result printed whole, once, after the view. Registry and file-name text is shown literally,
never read as rich markup.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

REG = "localhost:5000"
OTHER = "registry.example.com:5443"

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


class Screen:
    """Just enough of a terminal for rich's live display: text, CR/LF, cursor up/down, erase."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = [[]]
        self.row = 0
        self.col = 0

    def _line(self) -> list[str]:
        while len(self.lines) <= self.row:
            self.lines.append([])
        return self.lines[self.row]

    def feed(self, text: str) -> None:
        text = _OSC.sub("", text)
        pos = 0
        while pos < len(text):
            match = _CSI.match(text, pos)
            if match:
                self._csi(match.group(1), match.group(2))
                pos = match.end()
                continue
            char = text[pos]
            pos += 1
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self.row += 1
                self.col = 0
                self._line()
            elif char == "\x1b" or char < " ":
                continue
            else:
                line = self._line()
                while len(line) < self.col:
                    line.append(" ")
                if self.col < len(line):
                    line[self.col] = char
                else:
                    line.append(char)
                self.col += 1

    def _csi(self, params: str, final: str) -> None:
        number = int(params) if params.isdigit() else None
        if final == "A":
            self.row = max(0, self.row - (number or 1))
        elif final == "B":
            self.row += number or 1
        elif final == "C":
            self.col += number or 1
        elif final == "D":
            self.col = max(0, self.col - (number or 1))
        elif final == "G":
            self.col = (number or 1) - 1
        elif final == "K":
            line = self._line()
            if number == 2:
                line.clear()
            elif number == 1:
                line[: self.col] = [" "] * min(self.col, len(line))
            else:
                del line[self.col :]
        elif final == "J" and (number or 0) == 0:
            del self._line()[self.col :]
            del self.lines[self.row + 1 :]

    def text(self) -> list[str]:
        return [line for line in ("".join(chars).rstrip() for chars in self.lines) if line]


def run_on_pty(
    project: Path, scenario: dict[str, Any], timeout: float = 60
) -> tuple[int, str, str]:
    """(exit code, stdout, raw terminal output) of the fake CLI with stderr on a pty."""
    path = project / "scenario.json"
    path.write_text(json.dumps(scenario))
    master, slave = os.openpty()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CI", "GITHUB_", "GITLAB_", "CODEBUILD_"))
    }
    env.update({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "50"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_cli", str(path)],
        cwd=project,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    stdout = proc.communicate(timeout=10)[0].decode()
    return proc.returncode, stdout, b"".join(chunks).decode("utf-8", "replace")


def screen_of(raw: str) -> list[str]:
    screen = Screen()
    screen.feed(raw)
    return screen.text()


# ---------------------------------------------------------------- the terminal model itself


def test_screen_model_replays_a_redrawn_region() -> None:
    raw = "a\nframe 1\r\x1b[2K\x1b[1A\x1b[2Kframe 2\ndone\n"
    assert screen_of(raw) == ["frame 2", "done"]


# ---------------------------------------------------------------- push live view


def test_push_view_gives_each_registry_a_line_and_prints_results_after_it(
    project: Path,
) -> None:
    code, stdout, raw = run_on_pty(
        project, {"argv": ["push", "-r", REG, "-r", OTHER], "built": True, "chunk_delay": 0.08}
    )
    assert code == 0, raw
    assert "Traceback" not in raw
    screen = screen_of(raw)
    # One panel line per registry, finished at 100%.
    for registry in (REG, OTHER):
        panel = [
            line
            for line in screen
            if registry in line and not line.startswith(("pushed ", "tagged "))
        ]
        assert len(panel) == 1, (registry, screen)
        assert "100%" in panel[0], (registry, screen)
    # Every result once, whole, and below the view.
    references = stdout.split()
    assert len(references) == 4, stdout
    last_panel = max(
        i for i, line in enumerate(screen) if (REG in line or OTHER in line) and "100%" in line
    )
    for reference in references:
        results = [
            i
            for i, line in enumerate(screen)
            if line in (f"pushed {reference}", f"tagged {reference}")
        ]
        assert len(results) == 1, (reference, screen)
        assert results[0] > last_panel, (reference, screen)


def test_registry_text_is_never_read_as_markup(project: Path) -> None:
    refused = "denied: requested access to [/dim]the resource[bold] is denied"
    scenario = {
        "argv": ["push", "-r", REG],
        "built": True,
        "push_errors": {
            f"{REG}/demo:latest": [{"error": refused, "errorDetail": {"message": refused}}]
        },
        "push_chunks": {},
        "env": {"SHIPIT_REGISTRY_USERNAME": "ci", "SHIPIT_REGISTRY_PASSWORD": "pw-for-the-test"},
    }
    code, _, raw = run_on_pty(project, scenario)
    screen = "\n".join(screen_of(raw))
    assert "MarkupError" not in raw and "Traceback" not in raw
    assert code == 3, raw
    assert "[/dim]the resource[bold] is denied" in screen


def test_layer_status_with_brackets_is_shown_literally(project: Path) -> None:
    tag_chunks = [
        {"status": "The push refers to repository [localhost:5000/demo]"},
        {"status": "[/dim]Preparing[bold]", "id": "[red]layer1", "progressDetail": {}},
        {"status": "Pushed", "id": "[red]layer1", "progressDetail": {}},
        {"status": "latest: digest: sha256:" + "a" * 64 + " size: 1234"},
        {"aux": {"Tag": "latest", "Digest": "sha256:" + "a" * 64, "Size": 1234}},
    ]
    scenario = {
        "argv": ["push", "-r", REG, "--no-latest", "-t", "latest"],
        "built": True,
        "push_chunks": {f"{REG}/demo:latest": tag_chunks},
    }
    code, _, raw = run_on_pty(project, scenario)
    assert "MarkupError" not in raw and "Traceback" not in raw
    assert code in (0, 6), raw  # the fake registry may not serve the canned digest


@pytest.mark.parametrize("name", ["[bold]x.pem", "[red]cert.pem"])
def test_file_names_are_shown_literally(project: Path, name: str) -> None:
    (project / name).write_text("secret\n")
    code, _, raw = run_on_pty(project, {"argv": ["build"], "built": False})
    assert "MarkupError" not in raw and "Traceback" not in raw
    assert code == 0, raw
    assert name in "\n".join(screen_of(raw))


def test_build_step_and_output_with_brackets_are_shown_literally(project: Path) -> None:
    # The case: a RUN step containing `[/dim]` ended in a MarkupError traceback, and
    # `echo [bold]x` was shown as `x`.
    image_id = "sha256:" + "b" * 64
    scenario = {
        "argv": ["build", "--no-latest", "-t", "x"],
        "env": {"DOCKER_BUILDKIT": "0"},
        "images": {"demo:x": image_id},
        "build_chunks": [
            {"stream": "Step 1/2 : FROM scratch\n"},
            {"stream": "Step 2/2 : RUN echo '[/dim] done' && echo [bold]x\n"},
            {"stream": "[/dim] done\n"},
            {"stream": "[bold]x\n"},
            {"aux": {"ID": image_id}},
            {"stream": f"Successfully built {image_id[7:19]}\n"},
        ],
    }
    code, _, raw = run_on_pty(project, scenario)
    assert "MarkupError" not in raw and "Traceback" not in raw, raw
    assert code == 0, raw
    screen = "\n".join(screen_of(raw))
    assert "RUN echo '[/dim] done' && echo [bold]x" in screen
