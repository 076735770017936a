"""All output goes through the Reporter: human text and progress on stderr, machine output on stdout.

On a terminal it draws live views with rich; when stderr is not a terminal or CI is set it
prints plain (timestamped in CI) lines; under GitHub Actions it adds ::group:: markers and
::add-mask:: for secrets. `--json` keeps stdout to exactly one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from shipit.adapters.engine.buildkit.trace import strip_ansi
from shipit.errors import ShipitError
from shipit.model import BuildOutput, BuildStep, Event, PushProgress, PushStatus


@dataclass(frozen=True)
class OutputMode:
    """How to print, decided once from the options and the environment."""

    live: bool = False
    ci: bool = False
    github: bool = False
    quiet: bool = False
    verbose: bool = False
    json: bool = False

    @classmethod
    def detect(
        cls,
        env: Mapping[str, str],
        *,
        stream: TextIO | None = None,
        quiet: bool = False,
        verbose: bool = False,
        json: bool = False,
    ) -> OutputMode:
        ci = bool(env.get("CI")) and env.get("CI", "").lower() not in {"0", "false", "no"}
        stream = stream or sys.stderr
        tty = bool(getattr(stream, "isatty", lambda: False)()) and env.get("TERM") != "dumb"
        return cls(
            live=tty and not ci and not quiet,
            ci=ci,
            github=env.get("GITHUB_ACTIONS") == "true",
            quiet=quiet,
            verbose=verbose,
            json=json,
        )


class Reporter:
    """The single place that writes to the user."""

    def __init__(
        self, mode: OutputMode, *, stdout: TextIO | None = None, stderr: TextIO | None = None
    ):
        self.mode = mode
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr
        self._masked: set[str] = set()
        self._console: Any = None

    # ------------------------------------------------------------ plain text

    def _line(self, text: str) -> None:
        if self.mode.ci:
            text = f"[{time.strftime('%H:%M:%S')}] {text}"
        self._write_err(text)

    def _write_err(self, text: str) -> None:
        for secret in self._masked:
            text = text.replace(secret, "***")
        print(text, file=self.err, flush=True)

    def info(self, text: str) -> None:
        """Progress the user wants to see unless --quiet."""
        if not self.mode.quiet:
            self._line(text)

    def detail(self, text: str) -> None:
        """Extra detail for --verbose."""
        if self.mode.verbose and not self.mode.quiet:
            self._line(text)

    def warn(self, text: str) -> None:
        if self.mode.github:
            self._write_err(f"::warning::{text}")
        else:
            self._line(f"warning: {text}")

    def success(self, text: str) -> None:
        if not self.mode.quiet:
            self._line(text)

    def error(self, error: ShipitError) -> None:
        """One line saying what failed (plus any detail lines and a hint saying what to do)."""
        for line in error.details:
            self._write_err(f"  | {line}")
        prefix = "::error::" if self.mode.github else "error: "
        self._write_err(f"{prefix}{error.message}")
        if error.hint:
            self._write_err(f"  hint: {error.hint}")

    def mask(self, secret: str) -> None:
        """Never print `secret`; under GitHub Actions, register it as a mask first."""
        if not secret or secret in self._masked:
            return
        self._masked.add(secret)
        if self.mode.github:
            print(f"::add-mask::{secret}", file=self.err, flush=True)

    # ------------------------------------------------------------ machine output

    def emit_json(self, payload: Mapping[str, Any]) -> None:
        """The one JSON object of a --json run, on stdout."""
        text = json.dumps(payload, sort_keys=False)
        for secret in self._masked:
            text = text.replace(secret, "***")
        print(text, file=self.out, flush=True)

    def emit(self, line: str) -> None:
        """A machine-readable result line (e.g. REFERENCE@DIGEST) on stdout, unless --json."""
        if not self.mode.json:
            print(line, file=self.out, flush=True)

    # ------------------------------------------------------------ phases and progress

    @contextmanager
    def phase(self, title: str) -> Iterator[None]:
        """A named phase: a ::group:: under GitHub Actions, a heading line elsewhere."""
        if self.mode.github:
            print(f"::group::{title}", file=self.err, flush=True)
        else:
            self.info(f"==> {title}")
        try:
            yield
        finally:
            if self.mode.github:
                print("::endgroup::", file=self.err, flush=True)

    @contextmanager
    def progress(self, title: str) -> Iterator[ProgressView]:
        """A view for build or push events: live on a terminal, plain lines otherwise."""
        view: ProgressView
        view = LiveView(self, title) if self.mode.live else PlainView(self)
        with view:
            yield view

    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.err, highlight=False)
        return self._console


class ProgressView(ABC):
    """Receives engine events; subclasses decide how to show them."""

    def __enter__(self) -> ProgressView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @abstractmethod
    def __call__(self, event: Event) -> None:
        """Show one event."""


class PlainView(ProgressView):
    """One line per step and output line in CI logs; pushes print per-layer milestones only."""

    _LAYER_MILESTONES = frozenset({"Pushed", "Layer already exists", "Mounted from"})

    def __init__(self, reporter: Reporter):
        self.reporter = reporter

    def __call__(self, event: Event) -> None:
        r = self.reporter
        if isinstance(event, BuildStep):
            r.info(strip_ansi(event.text))
        elif isinstance(event, BuildOutput):
            if r.mode.verbose or r.mode.ci:
                # Build output carries terminal escapes (colours, titles): not in a log.
                r.info(f"  {strip_ansi(event.text)}")
        elif isinstance(event, PushProgress):
            if any(event.status.startswith(m) for m in self._LAYER_MILESTONES):
                r.info(f"  {event.layer}: {event.status}")
        elif isinstance(event, PushStatus):
            r.detail(f"  {event.text}")


REDRAW_SECONDS = 0.25


class LiveView(ProgressView):
    """A rich Live panel: the current build step with its last lines, or a bar per pushed layer."""

    def __init__(self, reporter: Reporter, title: str):
        from rich.live import Live

        self.reporter = reporter
        self.title = title
        self.step = ""
        self.lines: deque[str] = deque(maxlen=6)
        self.layers: dict[str, tuple[str, int | None, int | None]] = {}
        self._last = 0.0
        # Redrawn from the event stream, at most REDRAW_SECONDS apart and only after a change:
        # no refresh thread repainting an unchanged panel while the engine works.
        self.live = Live(
            self._render(), console=reporter.console(), auto_refresh=False, transient=True
        )

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        if self.layers:
            table = Table.grid(padding=(0, 1))
            for layer, (status, current, total) in list(self.layers.items())[-12:]:
                bar: Any = Text("")
                if total:
                    bar = ProgressBar(total=total, completed=current or 0, width=30)
                table.add_row(Text(layer[:12], style="cyan"), Text(status[:24]), bar)
            return Group(Text(self.title, style="bold"), table)
        parts: list[Any] = [Text(self.title, style="bold"), Text(self.step, style="cyan")]
        parts.extend(Text(f"  {line}"[:200], style="dim") for line in self.lines)
        return Group(*parts)

    def __call__(self, event: Event) -> None:
        if isinstance(event, BuildStep):
            from rich.text import Text

            # A step's text is the user's Dockerfile line: shown as Text, never read as markup.
            self.step = strip_ansi(event.text)
            self.lines.clear()
            self.reporter.console().print(Text(self.step, style="dim"), highlight=False)
        elif isinstance(event, BuildOutput):
            self.lines.append(strip_ansi(event.text))
        elif isinstance(event, PushProgress):
            self.layers[event.layer] = (event.status, event.current, event.total)
        elif isinstance(event, PushStatus):
            self.lines.append(event.text)
        now = time.monotonic()
        if now - self._last >= REDRAW_SECONDS:
            self._last = now
            self.live.update(self._render(), refresh=True)
