"""Markdown for docs/benchmarks.md: summary table, machine, method, and each case in detail."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.machine import MachineInfo
from benchmarks.stats import CaseResult, Side, format_value, spread

VERDICT = {
    "met": "met",
    "missed": "**missed**",
    "info": "(reported)",
    "skipped": "skipped",
    "error": "**error**",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _side_cell(side: Side | None) -> str:
    if side is None or not side.samples:
        return "-"
    return format_value(side.median, "s")


def summary_table(results: Sequence[CaseResult]) -> list[str]:
    lines = [
        "| # | Case | A (median) | B (median) | Result | Target | Verdict |",
        "|---|------|------------|------------|--------|--------|---------|",
    ]
    for result in results:
        a = result.sides[0] if result.sides else None
        b = result.sides[1] if len(result.sides) > 1 else None
        metric = "-" if result.metric is None else format_value(result.metric, result.unit)
        target = result.target.describe() if result.target else "-"
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    result.key,
                    result.title,
                    _side_cell(a),
                    _side_cell(b),
                    metric,
                    target,
                    VERDICT[result.status],
                )
            )
            + " |"
        )
    return lines


def _samples(side: Side) -> str:
    runs = ", ".join(f"{s:.3f}" for s in side.samples)
    noise = f"; spread {spread(side.samples) * 100:.0f}%" if len(side.samples) > 1 else ""
    return f"{len(side.samples)} run(s): {runs} s{noise}"


def case_section(result: CaseResult) -> list[str]:
    lines = [f"### {result.key}. {result.title}", ""]
    for tag, side in zip("ABCD", result.sides, strict=False):
        if side.samples:
            lines.append(
                f"- **{tag} - {side.label}**: `{side.command}` - median "
                f"{format_value(side.median, 's')} ({_samples(side)})"
            )
        else:
            lines.append(f"- **{tag} - {side.label}**: `{side.command}`")
    if result.metric is not None:
        what = "Ratio A/B" if result.unit == "x" and len(result.sides) == 2 else "Measured"
        target = f"; target {result.target.describe()}" if result.target else ""
        lines.append(
            f"- **{what}**: {format_value(result.metric, result.unit)}{target} - "
            f"{VERDICT[result.status]}"
        )
    elif result.status in ("skipped", "error"):
        lines.append(f"- **{VERDICT[result.status].strip('*').capitalize()}**")
    for note in result.notes:
        lines.append(f"- {note}")
    if result.error:
        lines += ["", "Error:", "", "```text", result.error.rstrip(), "```"]
    if result.profile:
        lines += ["", "Profile:", "", "```text", result.profile.rstrip(), "```"]
    if result.next_step:
        lines += ["", f"**Next step**: {result.next_step}"]
    lines.append("")
    return lines


def render(
    machine: MachineInfo,
    results: Sequence[CaseResult],
    *,
    method: Sequence[str],
    mode: str,
    command: str,
    duration_s: float,
) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}` ({mode} mode, {duration_s / 60:.1f} minutes) on "
        f"{machine.date} UTC. Generated file: run the harness again instead of editing it.",
        "",
        "Targets are measured here, never asserted in tests: a missed target is reported with "
        "the profile that explains it and the next step.",
        "",
        "## Summary",
        "",
        *summary_table(results),
        "",
    ]
    missed = [r for r in results if r.status == "missed"]
    if missed:
        lines.append("Missed targets: " + ", ".join(f"{r.key} ({r.title})" for r in missed) + ".")
    else:
        lines.append("Missed targets: none.")
    problems = [r for r in results if r.status in ("skipped", "error")]
    if problems:
        lines.append(
            "Not measured: "
            + ", ".join(
                f"{r.key} ({r.status}: {(r.notes or [r.error or ''])[0]})" for r in problems
            )
            + "."
        )
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in machine.rows()]
    lines += ["", "## Method", "", *method, "", "## Cases", ""]
    for result in results:
        lines += case_section(result)
    return "\n".join(lines).rstrip() + "\n"
