"""BuildKit progress views, fed with the events of streams recorded on the engine."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from shipit.adapters.engine.buildkit.trace import (
    BuildTrace,
    BuildWarning,
    TraceEvent,
    iter_trace,
)
from shipit.output.build_progress import LiveBuildView, PlainBuildView, build_progress
from shipit.output.reporter import OutputMode, Reporter
from shipit.text import plain_text

FIXTURES = Path(__file__).parent / "buildkit" / "fixtures" / "trace"


def events(name: str) -> list[TraceEvent]:
    lines = (FIXTURES / f"{name}.jsonl").read_text().splitlines()
    return list(iter_trace(iter(json.loads(line) for line in lines), BuildTrace()))


def run_plain(name: str, **mode: bool) -> list[str]:
    err = io.StringIO()
    reporter = Reporter(OutputMode(**mode), stdout=io.StringIO(), stderr=err)
    with build_progress(reporter, "Building app:1") as view:
        assert isinstance(view, PlainBuildView)
        for event in events(name):
            view(event)
    return err.getvalue().splitlines()


def test_plain_view_prints_dockerfile_steps_with_cached_and_done() -> None:
    lines = run_plain("cached")
    assert "#6 [3/4] COPY app.txt /app.txt" in lines
    assert lines[lines.index("#6 [3/4] COPY app.txt /app.txt") + 1] == "#6 CACHED"
    # BuildKit's own steps only with -v
    assert not any("load remote build context" in line for line in lines)
    assert any("load remote build context" in line for line in run_plain("cached", verbose=True))


def test_plain_view_shows_output_in_ci_and_with_verbose_only() -> None:
    assert not any(line.endswith(" building") for line in run_plain("fresh"))
    ci = run_plain("fresh", ci=True)
    assert any(line.endswith(" building") and line.startswith("[") for line in ci)  # timestamped
    assert any(line.endswith(" building") for line in run_plain("fresh", verbose=True))


def test_plain_view_strips_terminal_escapes_and_keeps_brackets() -> None:
    lines = run_plain("hostile", verbose=True)
    assert all("\x1b" not in line for line in lines)
    assert any(line.endswith(" [/dim] closing tag") for line in lines)
    assert any(line.endswith(" red and [link=http://x]y[/link]") for line in lines)


def test_plain_view_always_shows_a_failing_step() -> None:
    lines = run_plain("failing", quiet=False)
    assert any(line.startswith("#6 ERROR: executor failed running") for line in lines)


def test_plain_view_turns_warnings_into_warnings() -> None:
    err = io.StringIO()
    reporter = Reporter(OutputMode(), stdout=io.StringIO(), stderr=err)
    PlainBuildView(reporter)(BuildWarning("FromAsCasing: casing", "[1/2] FROM x"))
    assert err.getvalue() == "warning: FromAsCasing: casing ([1/2] FROM x)\n"


def _terminal_reporter(out: io.StringIO) -> Reporter:
    from rich.console import Console

    reporter = Reporter(OutputMode(live=True), stdout=io.StringIO(), stderr=out)
    reporter._console = Console(file=out, force_terminal=True, width=120, highlight=False)
    return reporter


@pytest.mark.parametrize("name", ["hostile", "multistage", "failing", "partial", "cached"])
def test_live_view_shows_untrusted_text_literally(name: str) -> None:
    out = io.StringIO()
    reporter = _terminal_reporter(out)
    with build_progress(reporter, "Building app:1") as view:
        assert isinstance(view, LiveBuildView)
        for event in events(name):
            view(event)
    screen = out.getvalue()
    if name == "hostile":
        assert '[/dim] closing tag" && echo "[bold]x"' in screen  # the step name, literally
    if name == "failing":
        assert "ERROR" in screen
    if name == "cached":
        assert "[4/4] RUN cat /app.txt" in screen and "CACHED" in screen


def test_live_view_prints_each_finished_dockerfile_step_once() -> None:
    out = io.StringIO()
    reporter = _terminal_reporter(out)
    with build_progress(reporter, "Building app:1") as view:
        for event in events("multistage"):
            view(event)
    screen = plain_text(out.getvalue().replace("\r", "\n"))
    printed = [line for line in screen.splitlines() if " DONE " in line]
    names = [line for line in printed if "[stage-2 4/4] RUN cat /out.txt /assets.txt" in line]
    assert len(names) == 1


# ---------------------------------------------------------------- the legacy builder's views


def test_legacy_live_view_shows_a_hostile_step_literally() -> None:
    from shipit.model import BuildOutput, BuildStep
    from shipit.output.reporter import LiveView

    out = io.StringIO()
    reporter = _terminal_reporter(out)
    with LiveView(reporter, "Building app:1") as view:
        view(BuildStep("Step 2/2 : RUN echo [/dim] and [bold]x"))
        view(BuildOutput("\x1b[91m[/dim] red\x1b[0m"))
    screen = plain_text(out.getvalue())
    assert "Step 2/2 : RUN echo [/dim] and [bold]x" in screen


def test_legacy_plain_view_strips_terminal_escapes() -> None:
    from shipit.model import BuildOutput, BuildStep
    from shipit.output.reporter import PlainView

    err = io.StringIO()
    reporter = Reporter(OutputMode(ci=True), stdout=io.StringIO(), stderr=err)
    view = PlainView(reporter)
    view(BuildStep("Step 1/2 : RUN \x1b[1mmake\x1b[0m"))
    view(BuildOutput("\x1b[91mnpm WARN\x1b[0m deprecated \x1b]0;title\x07"))
    text = err.getvalue()
    assert "\x1b" not in text
    assert "Step 1/2 : RUN make" in text and "  npm WARN deprecated" in text
