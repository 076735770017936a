"""The state one benchmark run shares between cases: mode, run counts, temp dirs, the engine."""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import proc, support
from benchmarks.names import SAMPLE, SAMPLE_SINGLE
from benchmarks.stats import measure_alternating

DEFAULT_PYTHON_IMAGE = "shipit.local/python:3.11-bookworm"
__all__ = ["DEFAULT_PYTHON_IMAGE", "SAMPLE", "SAMPLE_SINGLE", "Bench"]


@dataclass
class Bench:
    quick: bool
    tmp: Path
    python_image: str = DEFAULT_PYTHON_IMAGE
    client: Any = None
    runs: int = 5
    cheap_runs: int = 15
    started: float = field(default_factory=time.monotonic)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    dockerd: int | None = None
    #: Image ids this run created (or touched): removed at the end when left untagged.
    created: list[str] = field(default_factory=list)

    # ------------------------------------------------------------ basics

    @property
    def warmup(self) -> bool:
        return not self.quick

    def log(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[bench {elapsed:7.1f}s] {text}", file=sys.stderr, flush=True)

    def env(self, **extra: str) -> dict[str, str]:
        return proc.base_env(self.tmp, extra)

    def workdir(self, name: str) -> Path:
        """A new empty directory under the run's temp dir (no git, no shipit config)."""
        path = self.tmp / f"{name}-{next(self._ids)}"
        path.mkdir(parents=True)
        return path

    def shipit(self, *args: str) -> list[str]:
        return [proc.SHIPIT, *args]

    def timer(
        self,
        command: Sequence[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        *,
        remember: str | None = None,
    ) -> Callable[[], float]:
        """A side for `measure`: runs ``command`` and returns its wall seconds; ``remember``
        names a tag the command moves, whose every image the clean-up then knows."""
        run_env = env or self.env()

        def run() -> float:
            seconds = proc.timed(command, env=run_env, cwd=cwd).seconds
            if remember:
                self.remember(remember)
            return seconds

        return run

    def profile(
        self,
        args: Sequence[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        *,
        pty: bool = False,
    ) -> tuple[Path, proc.Run]:
        """``shipit ARGS`` once more under cProfile: (the profile file, the run)."""
        out = self.tmp / f"profile-{next(self._ids)}.prof"
        runner = proc.timed_pty if pty else proc.timed
        return out, runner(proc.cprofile_command(args, out), env=env or self.env(), cwd=cwd)

    def build_arg(self) -> list[str]:
        return ["--build-arg", f"PYTHON_IMAGE={self.python_image}"]

    def measure(
        self,
        sides: dict[str, Callable[[], float]],
        *,
        runs: int | None = None,
        warmup: bool | None = None,
    ) -> dict[str, list[float]]:
        runs = runs or self.runs
        warm = self.warmup if warmup is None else warmup
        counter = itertools.count(1)
        total = runs * len(sides) + (len(sides) if warm else 0)

        def wrap(label: str, fn: Callable[[], float]) -> Callable[[], float]:
            def run() -> float:
                n = next(counter)
                seconds = fn()
                self.log(f"  {n}/{total} {label}: {seconds:.3f} s")
                return seconds

            return run

        return measure_alternating(
            {label: wrap(label, fn) for label, fn in sides.items()}, runs, warmup=warm
        )

    # ------------------------------------------------------------ registries

    @contextlib.contextmanager
    def registry(self) -> Iterator[Any]:
        """A fresh, empty ``docker-registry`` on loopback, stopped and deleted afterwards."""
        with support.fresh_registry(self.workdir("registry")) as registry:
            yield registry

    @contextlib.contextmanager
    def registries(self, count: int) -> Iterator[list[Any]]:
        with contextlib.ExitStack() as stack:
            yield [stack.enter_context(self.registry()) for _ in range(count)]

    # ------------------------------------------------------------ engine

    def forget(self, references: Sequence[str]) -> None:
        """Drop registry-qualified local tags a push created (untimed, both sides alike)."""
        proc.remove_references(self.client, references)

    def remember(self, *references: str, output: str = "") -> None:
        """Note the images a build made (by its tags now, and the step ids in its output) so
        the clean-up can remove the ones left untagged when a tag moved on."""
        import docker.errors

        self.created.extend(proc.build_image_ids(output))
        for reference in references:
            with contextlib.suppress(docker.errors.NotFound):
                self.created.append(self.client.images.get(reference).id)

    def remove_created(self) -> int:
        """Remove every remembered image that is now untagged (twice: parents freed late)."""
        removed = proc.remove_if_untagged(self.client, self.created)
        removed += proc.remove_if_untagged(self.client, self.created)
        return removed

    def image_size(self, reference: str) -> int:
        return int(self.client.images.get(reference).attrs["Size"])

    def tag(self, source: str, repository: str, tag: str) -> None:
        self.client.images.get(source).tag(repository, tag)
