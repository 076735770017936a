"""The `shipit inspect` report: rich tables on a terminal, plain text in pipes and CI logs."""

from __future__ import annotations

import io
import shutil
from collections.abc import Sequence

from shipit.model import Comparison, ImageReport, megabytes
from shipit.output.reporter import Reporter


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
        ("size", megabytes(report.size)),
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
