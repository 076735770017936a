"""BuildKit build progress: docker's plain lines off a terminal, a live view of the running steps on one.

Step names and output lines are untrusted text (a RUN step may print ``[/dim]``): they are
shown through rich ``Text`` objects, never parsed as markup, and carry no terminal escapes.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shipit.adapters.engine.buildkit.trace import (
    BuildWarning,
    StepFinished,
    StepLog,
    StepProgress,
    StepStarted,
    TraceEvent,
    is_internal,
    plain_lines,
)
from shipit.output.reporter import Reporter
from shipit.text import plain_text

REDRAW_SECONDS = 0.25
LOG_LINES = 6


@contextmanager
def build_progress(reporter: Reporter, title: str) -> Iterator[BuildView]:
    """A view for one BuildKit build: live on a terminal, plain lines otherwise."""
    view: BuildView = (
        LiveBuildView(reporter, title) if reporter.mode.live else PlainBuildView(reporter)
    )
    with view:
        yield view


class BuildView(ABC):
    """Receives the trace's events."""

    def __enter__(self) -> BuildView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @abstractmethod
    def __call__(self, event: TraceEvent) -> None: ...


class PlainBuildView(BuildView):
    """docker's plain progress: ``#3 [builder 2/5] RUN ...``, ``#3 DONE 1.2s``, ``#3 CACHED``.

    Dockerfile steps and errors at normal verbosity; BuildKit's own steps (loading the context,
    exporting) and status lines with -v; the steps' output in CI or with -v, as the legacy
    builder's output.
    """

    def __init__(self, reporter: Reporter):
        self.reporter = reporter

    def __call__(self, event: TraceEvent) -> None:
        r = self.reporter
        if isinstance(event, BuildWarning):
            r.warn(plain_lines(event)[0].removeprefix("warning: "))
            return
        if isinstance(event, StepLog):
            show = r.info if (r.mode.verbose or r.mode.ci) else r.detail
        elif isinstance(event, StepProgress):
            show = r.detail
        elif isinstance(event, StepFinished) and event.error and not event.canceled:
            show = r.info
        else:
            show = r.detail if is_internal(event.name) else r.info
        for line in plain_lines(event):
            show(line)


class LiveBuildView(BuildView):
    """Running steps with their time and the newest output lines; each finished Dockerfile
    step is printed once above the view (``CACHED``/``DONE 1.2s``/``ERROR``)."""

    def __init__(self, reporter: Reporter, title: str):
        from rich.live import Live

        self.reporter = reporter
        self.console = reporter.console()
        self.title = title
        self.running: dict[int, tuple[str, float]] = {}
        self.lines: deque[tuple[int, str]] = deque(maxlen=LOG_LINES)
        self._last = 0.0
        self.live = Live(self._render(), console=self.console, auto_refresh=False, transient=True)

    def __enter__(self) -> LiveBuildView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        now = time.monotonic()
        parts: list[Any] = [Text(self.title, style="bold")]
        for index, (name, since) in list(self.running.items())[-8:]:
            line = Text(f" => #{index} ", style="cyan")
            line.append(name[:160])
            line.append(f" {now - since:.1f}s", style="dim")
            parts.append(line)
        for index, text in self.lines:
            if index not in self.running:
                continue  # a finished step's output: its line above says how it ended
            parts.append(Text(f"    #{index} {text}"[:200], style="dim"))
        return Group(*parts)

    def _finished(self, event: StepFinished) -> None:
        from rich.text import Text

        self.running.pop(event.index, None)
        if is_internal(event.name) and not event.error:
            return
        if event.canceled:
            mark, style = "CANCELED", "yellow"
        elif event.error:
            mark, style = "ERROR", "red"
        elif event.cached:
            mark, style = "CACHED", "blue"
        else:
            mark, style = "DONE", "green"
        line = Text(f"#{event.index} ", style="dim")
        line.append(plain_text(event.name)[:200])
        line.append(f" {mark}", style=style)
        if mark == "DONE" and event.seconds is not None:
            line.append(f" {event.seconds:.1f}s", style="dim")
        self.console.print(line, highlight=False)

    def __call__(self, event: TraceEvent) -> None:
        from rich.text import Text

        if isinstance(event, StepStarted):
            self.running[event.index] = (plain_text(event.name), time.monotonic())
        elif isinstance(event, StepLog):
            self.lines.append((event.index, event.text))
        elif isinstance(event, StepFinished):
            self._finished(event)
        elif isinstance(event, BuildWarning):
            self.console.print(Text(plain_lines(event)[0], style="yellow"), highlight=False)
        now = time.monotonic()
        if isinstance(event, StepFinished) or now - self._last >= REDRAW_SECONDS:
            self._last = now
            self.live.update(self._render(), refresh=True)
