"""The live terminal view: redrawn from the event stream, throttled, with no refresh thread."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest
from rich.console import Console

from shipit.model import PushProgress
from shipit.output import reporter as reporter_module
from shipit.output.reporter import REDRAW_SECONDS, LiveView, OutputMode, Reporter


def _live_reporter(buffer: io.StringIO) -> Reporter:
    reporter = Reporter(OutputMode(live=True), stdout=io.StringIO(), stderr=buffer)
    reporter._console = Console(file=buffer, force_terminal=True, width=100)
    return reporter


def test_live_view_redraws_at_most_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(reporter_module.time, "monotonic", lambda: clock[0])
    buffer = io.StringIO()
    threads_before = threading.active_count()
    with LiveView(_live_reporter(buffer), "Pushing demo") as view:
        assert threading.active_count() == threads_before  # no background refresh thread
        updates: list[Any] = []
        real_update = view.live.update
        monkeypatch.setattr(
            view.live,
            "update",
            lambda r, refresh=False: (updates.append(r), real_update(r, refresh=refresh)),
        )
        for step in range(100):  # one second of events, 10 ms apart
            clock[0] = 1000.0 + step * 0.01
            view(PushProgress(layer="abcdef123456", status="Pushing", current=step, total=100))
    assert 1 <= len(updates) <= int(1 / REDRAW_SECONDS) + 1
    assert "abcdef123456" in buffer.getvalue()


class _SlowStream(io.StringIO):
    """A stream that lets other threads run between its writes, as a terminal or pipe may."""

    def write(self, text: str) -> int:
        written = super().write(text)
        time.sleep(0.0005)
        return written


def test_lines_from_jobs_side_by_side_never_mix() -> None:
    from shipit.platforms import Platform
    from shipit.services.multiplatform import PlatformReporter

    stream = _SlowStream()
    parent = Reporter(OutputMode(live=False), stdout=io.StringIO(), stderr=stream)
    jobs = [PlatformReporter(parent, Platform("linux", arch)) for arch in ("amd64", "arm64")]

    def job(view: Reporter) -> None:
        for n in range(40):
            view.info(f"line {n}")

    threads = [threading.Thread(target=job, args=(view,)) for view in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    expected = {f"[linux/{arch}] line {n}" for arch in ("amd64", "arm64") for n in range(40)}
    assert len(lines) == 80 and set(lines) == expected
