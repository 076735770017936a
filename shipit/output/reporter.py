"""All output goes through the Reporter: human text and progress on stderr, machine output on stdout.

On a terminal it draws live views with rich; when stderr is not a terminal or CI is set it
prints plain (timestamped in CI) lines; under GitHub Actions it adds ::group:: markers and
::add-mask:: for secrets. `--json` keeps stdout to exactly one JSON object.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from shipit.errors import ShipitError
from shipit.model import BuildOutput, BuildStep, Event, PushProgress, PushStatus
from shipit.text import plain_text


def literal(text: str, style: str | None = None) -> Any:
    """A rich Text of untrusted text: shown as is, never read as markup (`[/dim]` stays)."""
    from rich.text import Text

    return Text(plain_text(text), style=style or "")


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


# Jobs side by side (one platform or registry each) print through reporters of their own:
# each line is written whole, in one call, by one thread at a time, so lines never mix.
_LINES = threading.Lock()


def write_line(stream: TextIO, text: str) -> None:
    """``text`` and its line end to ``stream`` at once, flushed."""
    with _LINES:
        stream.write(text + "\n")
        stream.flush()


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
        # The live view on screen, if any: lines go above it, results are held until it ends.
        self._live: LiveView | None = None
        self._held: list[str] = []

    # ------------------------------------------------------------ plain text

    def _line(self, text: str, *, hold: bool = False) -> None:
        if self.mode.ci:
            text = f"[{time.strftime('%H:%M:%S')}] {text}"
        if hold and self._live is not None:
            # A result printed while a live view redraws would be erased or glued into it:
            # it is printed whole, once, when the view ends.
            self._held.append(text)
            return
        self._write_err(text)

    def _write_err(self, text: str) -> None:
        text = plain_text(text)
        for secret in self._masked:
            text = text.replace(secret, "***")
        if self._live is not None:
            self._live.print_above(text)
        else:
            write_line(self.err, text)

    def literal(self, text: str) -> None:
        """Untrusted text (engine, registry, container output; file names) as a progress line:
        never read as markup, escapes removed, above a live view when one is drawn."""
        self.info(text)

    def info(self, text: str) -> None:
        """Progress the user wants to see unless --quiet."""
        if not self.mode.quiet:
            self._line(text, hold=True)

    def detail(self, text: str) -> None:
        """Extra detail for --verbose."""
        if self.mode.verbose and not self.mode.quiet:
            self._line(text, hold=True)

    def warn(self, text: str) -> None:
        if self.mode.github:
            self._write_err(f"::warning::{text}")
        else:
            self._line(f"warning: {text}")

    def success(self, text: str) -> None:
        if not self.mode.quiet:
            self._line(text, hold=True)

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
            write_line(self.err, f"::add-mask::{secret}")

    # ------------------------------------------------------------ machine output

    def emit_json(self, payload: Mapping[str, Any]) -> None:
        """The one JSON object of a --json run, on stdout."""
        text = json.dumps(payload, sort_keys=False)
        for secret in self._masked:
            text = text.replace(secret, "***")
        write_line(self.out, text)

    def emit(self, line: str) -> None:
        """A machine-readable result line (e.g. REFERENCE@DIGEST) on stdout, unless --json."""
        if not self.mode.json:
            write_line(self.out, line)

    # ------------------------------------------------------------ phases and progress

    @contextmanager
    def phase(self, title: str) -> Iterator[None]:
        """A named phase: a ::group:: under GitHub Actions, a heading line elsewhere."""
        if self.mode.github:
            write_line(self.err, f"::group::{title}")
        else:
            self.info(f"==> {title}")
        try:
            yield
        finally:
            if self.mode.github:
                write_line(self.err, "::endgroup::")

    @contextmanager
    def progress(self, title: str) -> Iterator[ProgressView]:
        """A view for build or push events: live on a terminal, plain lines otherwise.

        Lines reported while a live view is drawn (`pushed ...`, `tagged ...`) are printed
        whole, once, after it.
        """
        if not self.mode.live or self._live is not None:
            yield PlainView(self) if self._live is None else self._live
            return
        view = LiveView(self, title)
        self._live = view
        try:
            with view:
                yield view
        finally:
            self._live = None
            held, self._held = self._held, []
            for line in held:
                self._write_err(line)

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

    def for_registry(self, label: str) -> Callable[[Event], None]:
        """The sink for one registry's push events (a live view gives each registry a line)."""
        return self


class PlainView(ProgressView):
    """One line per step and output line in CI logs; pushes print per-layer milestones only."""

    _LAYER_MILESTONES = frozenset({"Pushed", "Layer already exists", "Mounted from"})

    def __init__(self, reporter: Reporter):
        self.reporter = reporter

    def __call__(self, event: Event) -> None:
        r = self.reporter
        if isinstance(event, BuildStep):
            r.info(plain_text(event.text))
        elif isinstance(event, BuildOutput):
            if r.mode.verbose or r.mode.ci:
                # Build output carries terminal escapes (colours, titles): not in a log.
                r.info(f"  {plain_text(event.text)}")
        elif isinstance(event, PushProgress):
            if any(event.status.startswith(m) for m in self._LAYER_MILESTONES):
                r.info(f"  {event.layer}: {event.status}")
        elif isinstance(event, PushStatus):
            r.detail(f"  {event.text}")


REDRAW_SECONDS = 0.25
# Layer statuses after which a layer is complete, whatever its last byte count said.
_LAYER_DONE = ("Pushed", "Layer already exists", "Mounted from", "Already exists")


@dataclass
class _Layer:
    status: str
    current: int | None = None
    total: int | None = None

    @property
    def done(self) -> bool:
        return self.status.startswith(_LAYER_DONE)


def registry_percent(layers: Mapping[str, _Layer]) -> int:
    """One registry's push progress: 100 only when every layer is complete."""
    if not layers:
        return 0
    if all(layer.done for layer in layers.values()):
        return 100
    total = sum(layer.total or 0 for layer in layers.values())
    if total:
        sent = sum(
            (layer.total or 0) if layer.done else min(layer.current or 0, layer.total or 0)
            for layer in layers.values()
        )
        return min(99, sent * 100 // total)
    return min(99, 100 * sum(layer.done for layer in layers.values()) // len(layers))


class LiveView(ProgressView):
    """A rich Live panel: the current build step with its last lines, or one line per registry
    being pushed to (with its layers under it while they move)."""

    def __init__(self, reporter: Reporter, title: str):
        from rich.live import Live

        self.reporter = reporter
        self.title = title
        self.step = ""
        self.lines: deque[str] = deque(maxlen=6)
        # registry label ("" when the pusher names none) -> layer id -> state
        self.registries: dict[str, dict[str, _Layer]] = {}
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
        # The finished state stays on screen: each registry's line (at 100% when complete).
        if self.registries:
            self.reporter.console().print(self._registry_lines(final=True))

    def print_above(self, text: str, style: str | None = None) -> None:
        """A line printed above the panel (never read as markup)."""
        self.live.console.print(literal(text, style), soft_wrap=True)

    @property
    def layers(self) -> dict[str, tuple[str, int | None, int | None]]:
        """Every layer being pushed, as (status, current, total)."""
        return {
            layer: (state.status, state.current, state.total)
            for layers in self.registries.values()
            for layer, state in layers.items()
        }

    def _registry_lines(self, *, final: bool = False) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 1))
        for label, layers in self.registries.items():
            percent = registry_percent(layers)
            done = sum(layer.done for layer in layers.values())
            table.add_row(
                literal(label or self.title, style="bold"),
                ProgressBar(total=100, completed=percent, width=30),
                Text(f"{percent:3d}%"),
                Text(f"{done}/{len(layers)} layers"),
            )
            if final:
                continue
            for layer, state in list(layers.items())[-6:]:
                if state.done:
                    continue
                bar: Any = Text("")
                if state.total:
                    bar = ProgressBar(total=state.total, completed=state.current or 0, width=30)
                table.add_row(
                    literal(f"  {layer[:12]}", style="cyan"), bar, literal(state.status[:24])
                )
        return table

    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        if self.registries:
            return Group(literal(self.title, style="bold"), self._registry_lines())
        parts: list[Any] = [literal(self.title, style="bold"), literal(self.step, style="cyan")]
        parts.extend(literal(f"  {line}"[:200], style="dim") for line in self.lines)
        return Group(*parts) if parts else Text("")

    def for_registry(self, label: str) -> Callable[[Event], None]:
        return lambda event: self._show(event, label)

    def __call__(self, event: Event) -> None:
        self._show(event, "")

    def _show(self, event: Event, registry: str) -> None:
        if isinstance(event, BuildStep):
            # A step's text is the user's Dockerfile line: shown as Text, never read as markup.
            self.step = plain_text(event.text)
            self.lines.clear()
            self.print_above(self.step, style="dim")
        elif isinstance(event, BuildOutput):
            self.lines.append(plain_text(event.text))
        elif isinstance(event, PushProgress):
            layers = self.registries.setdefault(registry, {})
            state = layers.get(event.layer)
            if state is None:
                layers[event.layer] = _Layer(event.status, event.current, event.total)
            else:
                state.status = event.status
                state.current = event.current if event.current is not None else state.current
                state.total = event.total or state.total
        elif isinstance(event, PushStatus):
            self.lines.append(event.text)
        now = time.monotonic()
        if now - self._last >= REDRAW_SECONDS:
            self._last = now
            self.live.update(self._render(), refresh=True)
