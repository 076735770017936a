"""Pure statistics and result types: medians, ratios, targets and the alternated run order."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["met", "missed", "info", "skipped", "error"]


@dataclass(frozen=True)
class Target:
    """A bound a metric must stay within, e.g. ``Target("<=", 1.3)`` for a ratio of 1.3x."""

    op: Literal["<=", ">=", "=="]
    value: float
    unit: str = "x"

    def met(self, metric: float) -> bool:
        if self.op == "<=":
            return metric <= self.value
        if self.op == ">=":
            return metric >= self.value
        return metric == self.value

    def describe(self) -> str:
        return f"{self.op} {format_value(self.value, self.unit)}"


def format_value(value: float, unit: str) -> str:
    """``1.234 x`` -> ``1.23x``; seconds, MB and counts in their own style."""
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "MB/s":
        return f"{value:.1f} MB/s"
    if unit == "calls":
        return f"{value:.0f} call" + ("" if round(value) == 1 else "s")
    return f"{value:g} {unit}".strip()


def median(samples: Sequence[float]) -> float:
    """The median of one side's runs (there must be at least one)."""
    if not samples:
        raise ValueError("median of no samples")
    return float(statistics.median(samples))


def ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """median(a) / median(b): below 1 means side A is faster."""
    denominator = median(b)
    if denominator <= 0:
        raise ValueError("ratio against a zero median")
    return median(a) / denominator


def spread(samples: Sequence[float]) -> float:
    """(max - min) / median: how noisy one side was (0 for a single run)."""
    if len(samples) < 2:
        return 0.0
    mid = median(samples)
    return (max(samples) - min(samples)) / mid if mid else 0.0


def alternate(labels: Sequence[str], runs: int) -> list[str]:
    """The run order A B A B ...: each side ``runs`` times, interleaved so drift hits both."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    return [label for _ in range(runs) for label in labels]


def measure_alternating(
    sides: dict[str, Callable[[], float]], runs: int, *, warmup: bool = False
) -> dict[str, list[float]]:
    """Run every side ``runs`` times in alternation; each callable returns its seconds.

    ``warmup`` runs each side once first and throws the result away (disk caches, imports).
    """
    if warmup:
        for run in sides.values():
            run()
    samples: dict[str, list[float]] = {label: [] for label in sides}
    for label in alternate(list(sides), runs):
        samples[label].append(sides[label]())
    return samples


@dataclass
class Side:
    """One side of a comparison: what ran and how long each run took (seconds)."""

    label: str
    command: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return median(self.samples)


@dataclass
class CaseResult:
    """One row of the report.

    A comparison has two sides and its metric is median(A)/median(B); a single measurement
    (image size, time to healthy, a call count) has a metric and no sides, or one side.
    """

    key: str
    title: str
    sides: list[Side] = field(default_factory=list)
    metric: float | None = None
    unit: str = "x"
    target: Target | None = None
    status: Status = "info"
    notes: list[str] = field(default_factory=list)
    profile: str | None = None
    next_step: str | None = None
    error: str | None = None

    def decide(self) -> CaseResult:
        """Compute the ratio (two sides, no metric yet) and met/missed against the target."""
        if self.status in ("skipped", "error"):
            return self
        if self.metric is None and len(self.sides) == 2 and all(s.samples for s in self.sides):
            self.metric = ratio(self.sides[0].samples, self.sides[1].samples)
            self.unit = "x"
        if self.metric is None or self.target is None:
            self.status = "info"
        else:
            self.status = "met" if self.target.met(self.metric) else "missed"
        return self

    @property
    def missed(self) -> bool:
        return self.status == "missed"


def comparison(
    key: str,
    title: str,
    a: Side,
    b: Side,
    target: Target | None,
    *,
    notes: Sequence[str] = (),
) -> CaseResult:
    """A two-sided case, decided."""
    return CaseResult(key, title, sides=[a, b], target=target, notes=list(notes)).decide()


def measurement(
    key: str,
    title: str,
    value: float,
    unit: str,
    target: Target | None,
    *,
    side: Side | None = None,
    notes: Sequence[str] = (),
) -> CaseResult:
    """A single-value case, decided."""
    result = CaseResult(
        key,
        title,
        sides=[side] if side else [],
        metric=value,
        unit=unit,
        target=target,
        notes=list(notes),
    )
    return result.decide()


def skipped(key: str, title: str, reason: str) -> CaseResult:
    return CaseResult(key, title, status="skipped", notes=[reason])


def errored(key: str, title: str, error: str) -> CaseResult:
    return CaseResult(key, title, status="error", error=error)


def exit_code(results: Sequence[CaseResult]) -> int:
    """0 unless a case crashed: missed targets and skips are reported, not failures."""
    return 1 if any(r.status == "error" for r in results) else 0
