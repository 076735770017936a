"""`shipit inspect`: an image's size, layers, user, ports and healthcheck; two images compared."""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipit.adapters.engine.client import Engine
from shipit.output.reporter import Reporter


@dataclass(frozen=True)
class Layer:
    """One history entry: the instruction that made it and the bytes it added."""

    size: int
    instruction: str


@dataclass(frozen=True)
class ImageReport:
    """What `shipit inspect` shows about one image; `as_json()` is its JSON form."""

    reference: str
    id: str
    size: int
    created: str
    user: str
    exposed_ports: tuple[str, ...]
    healthcheck: str | None
    labels: Mapping[str, str]
    # In build order: the base image's layers first, the last instruction last.
    layers: tuple[Layer, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "image": self.reference,
            "id": self.id,
            "size_bytes": self.size,
            "size_mb": round(self.size / 1e6, 1),
            "created": self.created,
            "user": self.user or None,
            "exposed_ports": list(self.exposed_ports),
            "healthcheck": self.healthcheck,
            "labels": dict(self.labels),
            "layers": [{"size_bytes": x.size, "instruction": x.instruction} for x in self.layers],
        }


@dataclass(frozen=True)
class Comparison:
    """Two images side by side; the difference is `image` minus `other`."""

    image: ImageReport
    other: ImageReport

    @property
    def difference_bytes(self) -> int:
        return self.image.size - self.other.size

    @property
    def difference_mb(self) -> float:
        return round(self.difference_bytes / 1e6, 2)

    @property
    def percent(self) -> float | None:
        """How much bigger (+) or smaller (-) `image` is than `other`, in percent."""
        if not self.other.size:
            return None
        return round(100.0 * self.difference_bytes / self.other.size, 2)

    def summary(self) -> str:
        a, b = self.image, self.other
        if self.difference_bytes == 0:
            return f"{a.reference} and {b.reference} are the same size ({_mb(a.size)})"
        word = "smaller" if self.difference_bytes < 0 else "larger"
        pct = f", {abs(self.percent):.1f}% {word}" if self.percent is not None else ""
        return (
            f"{a.reference} is {abs(self.difference_mb):.2f} MB {word} than {b.reference} "
            f"({_mb(a.size)} vs {_mb(b.size)}{pct})"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "image": self.image.as_json(),
            "compare": self.other.as_json(),
            "difference_bytes": self.difference_bytes,
            "difference_mb": self.difference_mb,
            "difference_percent": self.percent,
        }


_NOP = re.compile(r"^/bin/sh -c #\(nop\)\s*")


_SHELL = re.compile(r"^(?:\|\d+ .*?)?/bin/sh -c ")


def clean_instruction(created_by: str) -> str:
    """`docker history`'s CreatedBy as the Dockerfile instruction ('/bin/sh -c #(nop) ' dropped)."""
    text = (created_by or "").strip()
    text = text.removesuffix("# buildkit").strip()
    if not text:
        # Layers of an imported base image (`docker import`, some registries) carry no history.
        return "(no history: base image layer)"
    if _NOP.match(text):
        return _NOP.sub("", text)
    if _SHELL.match(text):
        # A RUN step; the legacy builder prefixes '|N KEY=VALUE...' when build args were set.
        return "RUN " + _SHELL.sub("", text, count=1)
    return text


def format_healthcheck(healthcheck: Mapping[str, Any] | None) -> str | None:
    """'CMD curl -f http://... (every 5s, timeout 3s, 3 retries)'; 'disabled'; None if unset."""
    test = list((healthcheck or {}).get("Test") or [])
    if not test:
        return None
    if test[0] == "NONE":
        return "disabled"
    kind, args = test[0], test[1:]
    # As a Dockerfile would say it: exec form for CMD, shell form for CMD-SHELL.
    command = f"CMD {json.dumps(args)}" if kind == "CMD" else f"CMD {args[0] if args else ''}"
    parts = []
    for key, word in (("Interval", "every"), ("Timeout", "timeout"), ("StartPeriod", "start")):
        nanos = (healthcheck or {}).get(key)
        if nanos:
            parts.append(f"{word} {nanos / 1e9:g}s")
    retries = (healthcheck or {}).get("Retries")
    if retries:
        parts.append(f"{retries} retries")
    suffix = f" ({', '.join(parts)})" if parts else ""
    return f"{command}{suffix}"


def inspect_image(engine: Engine, reference: str) -> ImageReport:
    """Size, layers (with the instruction behind each), user, ports, healthcheck and labels."""
    info = engine.require_image(reference)
    history = engine.history(info.id)
    layers = tuple(
        Layer(
            size=int(entry.get("Size") or 0),
            instruction=clean_instruction(entry.get("CreatedBy") or ""),
        )
        for entry in reversed(history)
    )
    return ImageReport(
        reference=reference,
        id=info.id,
        size=info.size,
        created=str(info.raw.get("Created") or ""),
        user=info.user,
        exposed_ports=info.exposed_ports,
        healthcheck=format_healthcheck(info.healthcheck),
        labels=dict(info.labels),
        layers=layers,
    )


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _human(size: int) -> str:
    if size >= 1e6:
        return f"{size / 1e6:.1f} MB"
    if size >= 1e3:
        return f"{size / 1e3:.1f} kB"
    return f"{size} B"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _summary_rows(report: ImageReport) -> list[tuple[str, str]]:
    labels = [f"{k}={v}" for k, v in sorted(report.labels.items())]
    return [
        ("image", report.reference),
        ("id", report.id[:19]),
        ("size", _mb(report.size)),
        (
            "layers",
            f"{sum(1 for x in report.layers if x.size)} with content, {len(report.layers)} in all",
        ),
        ("user", report.user or "root (no USER)"),
        ("exposed", ", ".join(report.exposed_ports) or "-"),
        ("healthcheck", report.healthcheck or "none"),
        ("labels", "\n".join(labels) or "-"),
    ]


def format_report(report: ImageReport, *, width: int = 100) -> list[str]:
    """The plain-text report of one image (for pipes and CI logs)."""
    lines: list[str] = []
    for key, value in _summary_rows(report):
        for i, part in enumerate(value.split("\n")):
            lines.append(f"{key if i == 0 else '':<12} {part}")
    lines.append("")
    lines.append(f"{'SIZE':>9}  INSTRUCTION")
    for layer in report.layers:
        lines.append(f"{_human(layer.size):>9}  {_short(layer.instruction, width)}")
    return lines


def format_comparison(comparison: Comparison, *, width: int = 100) -> list[str]:
    """Plain text: the two summaries side by side, the difference, then each image's layers."""
    a, b = comparison.image, comparison.other
    rows_a, rows_b = _summary_rows(a), _summary_rows(b)
    col = max(20, min(48, max(len(v) for _, value in rows_a for v in value.split("\n"))))
    lines: list[str] = []
    for (key, left), (_, right) in zip(rows_a, rows_b, strict=True):
        lefts, rights = left.split("\n"), right.split("\n")
        for i in range(max(len(lefts), len(rights))):
            la = _short(lefts[i], col) if i < len(lefts) else ""
            rb = rights[i] if i < len(rights) else ""
            lines.append(f"{key if i == 0 else '':<12} {la:<{col}}  {rb}")
    lines.append("")
    lines.append(comparison.summary())
    for report in (a, b):
        lines.append("")
        lines.append(f"layers of {report.reference}:")
        lines.append(f"{'SIZE':>9}  INSTRUCTION")
        for layer in report.layers:
            lines.append(f"{_human(layer.size):>9}  {_short(layer.instruction, width)}")
    return lines


def render_tables(reports: Sequence[ImageReport], comparison: Comparison | None, width: int) -> str:
    """The same report as rich tables, rendered to text with terminal colours."""
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=width, highlight=False)
    summary = Table(show_header=len(reports) > 1, box=None, padding=(0, 2))
    summary.add_column("", style="bold")
    for report in reports:
        summary.add_column(report.reference if len(reports) > 1 else "", overflow="fold")
    rows = [_summary_rows(r) for r in reports]
    for i, (key, _) in enumerate(rows[0]):
        summary.add_row(key, *(r[i][1] for r in rows))
    console.print(summary)
    if comparison is not None:
        style = "green" if comparison.difference_bytes <= 0 else "yellow"
        console.print(f"[{style}]{comparison.summary()}[/{style}]")
    for report in reports:
        table = Table(title=f"layers of {report.reference}", title_justify="left")
        table.add_column("size", justify="right", no_wrap=True, min_width=8)
        table.add_column("instruction", overflow="ellipsis", no_wrap=True, max_width=width - 17)
        for layer in report.layers:
            table.add_row(
                _human(layer.size), layer.instruction, style=None if layer.size else "dim"
            )
        console.print(table)
    return buffer.getvalue().rstrip("\n")


def show_reports(
    reporter: Reporter, reports: Sequence[ImageReport], comparison: Comparison | None
) -> None:
    """Print the report on stdout: rich tables on a terminal, plain text otherwise."""
    width = shutil.get_terminal_size((120, 24)).columns
    tty = bool(getattr(reporter.out, "isatty", lambda: False)())
    if reporter.mode.live and tty:
        reporter.emit(render_tables(reports, comparison, width))
        return
    plain_width = 1000 if reporter.mode.verbose else 100
    lines = (
        format_comparison(comparison, width=plain_width)
        if comparison is not None
        else format_report(reports[0], width=plain_width)
    )
    for line in lines:
        reporter.emit(line.rstrip())
