"""The live terminal view: redrawn from the event stream, throttled, with no refresh thread."""

from __future__ import annotations

import io
import threading
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
