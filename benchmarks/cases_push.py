"""Cases that push the sample image to fresh loopback registries: fresh push (3), several
tags (4), two registries (7) and progress rendering (10)."""

from __future__ import annotations

import os
import shlex
import statistics
import tarfile
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import proc
from benchmarks.bench import Bench
from benchmarks.names import SAMPLE
from benchmarks.proc import Run, show, timed, timed_pty
from benchmarks.stats import CaseResult, Side, Target, comparison, spread

PORT = "127.0.0.1:PORT"

# ------------------------------------------------------------------------------ helpers


class Breakdown:
    """Per-run CPU seconds of the command, dockerd and the registries, and the wall time."""

    def __init__(self) -> None:
        self.runs: dict[str, list[dict[str, float]]] = {}

    def add(self, label: str, wall: float, command_cpu: float, other: dict[str, float]) -> None:
        self.runs.setdefault(label, []).append({"wall": wall, "command": command_cpu, **other})

    def timed(self, b: Bench, label: str, registries: Sequence[Any], run: Callable[[], Run]) -> Run:
        """``run()``, adding its wall time and the CPU of it, dockerd and the registries."""
        with proc.cpu_used({"dockerd": b.dockerd, **_registry_pids(registries)}) as used:
            result = run()
        self.add(label, result.seconds, result.cpu_seconds, used)
        return result

    def drop_warmup(self, warmup: bool) -> None:
        """Forget each side's first run when it was the untimed warm-up."""
        if warmup:
            self.runs = {label: runs[1:] for label, runs in self.runs.items()}

    def median(self, label: str, key: str) -> float:
        values = [run.get(key, 0.0) for run in self.runs.get(label, [])]
        return statistics.median(values) if values else 0.0

    def describe(self, label: str, command_name: str) -> str:
        keys = sorted({k for run in self.runs.get(label, []) for k in run} - {"wall", "command"})
        parts = [f"{command_name} process {self.median(label, 'command'):.2f}"]
        parts += [f"{key} {self.median(label, key):.2f}" for key in keys]
        return f"{label}: wall {self.median(label, 'wall'):.2f} s; CPU s (medians): " + ", ".join(
            parts
        )


def _registry_pids(registries: Sequence[Any]) -> dict[str, int | None]:
    return {
        f"registry{i + 1 if len(registries) > 1 else ''}": (r.process.pid if r.process else None)
        for i, r in enumerate(registries)
    }


def push_args(registries: Sequence[Any], *extra: str) -> list[str]:
    """``push --registry A [--registry B] --name SAMPLE EXTRA...`` (registries or addresses)."""
    flags = [x for r in registries for x in ("--registry", getattr(r, "address", r))]
    return ["push", *flags, "--name", SAMPLE, *extra]


def pushed_refs(registries: Sequence[Any], args: Sequence[str]) -> list[str]:
    """The registry-qualified local tags a push of ``args`` leaves (``latest`` unless --tag)."""
    tags = [args[i + 1] for i, a in enumerate(args) if a == "--tag"] or ["latest"]
    return [f"{r.address}/{SAMPLE}:{t}" for r in registries for t in tags]


def push_once(
    b: Bench,
    count: int,
    command_for: Callable[[list[Any]], list[str]],
    *,
    cwd: Path,
    env: dict[str, str],
    pty: bool = False,
    breakdown: Breakdown | None = None,
    label: str = "",
) -> Run:
    """One timed push against ``count`` fresh registries; its local registry tags are dropped
    afterwards (untimed), so every run starts alike."""
    with b.registries(count) as regs:
        command = command_for(regs)
        runner = timed_pty if pty else timed

        def run() -> Run:
            return runner(command, env=env, cwd=cwd)

        result = breakdown.timed(b, label, regs, run) if breakdown else run()
        b.forget(pushed_refs(regs, command))
    return result


def push_side(
    b: Bench,
    count: int,
    command_for: Callable[[list[Any]], list[str]],
    breakdown: Breakdown | None,
    label: str,
) -> Callable[[], float]:
    """A side for `measure`: one push to ``count`` fresh registries (its CPU counted under
    ``label`` when a breakdown is given)."""
    env, cwd = b.env(), b.workdir("push")
    return lambda: (
        push_once(b, count, command_for, cwd=cwd, env=env, breakdown=breakdown, label=label).seconds
    )


def shipit_push(b: Bench, *extra: str) -> Callable[[list[Any]], list[str]]:
    """``shipit push`` to the fresh registries of a run, with ``extra`` arguments."""
    return lambda regs: b.shipit(*push_args(regs, *extra))


def profile_push(
    b: Bench, args_for: Callable[[list[Any]], list[str]], registries: int, *, pty: bool = False
) -> tuple[str, Path]:
    """One more shipit push under cProfile, against fresh registries: (formatted profile, file)."""
    env = b.env(TERM="xterm-256color") if pty else b.env()
    with b.registries(registries) as regs:
        args = args_for(regs)
        out, run = b.profile(args, b.workdir("profile"), env, pty=pty)
        b.forget(pushed_refs(regs, args))
    return proc.format_cprofile(out) + f"\n(wall {run.seconds:.3f} s under cProfile)", out


ENGINE_CALLS = {
    "engine push": proc.where("engine", "push"),
    "digest check (distribution inspect)": proc.where("engine", "distribution_digest"),
    "registry API: get manifest": proc.where("registry_api|oci", "manifest"),
    "registry API: put manifest": proc.where("registry_api|oci", "put_manifest"),
    "docker-py import + connect": proc.where("engine", "connect"),
    "local image checks": proc.where("engine", "require_image"),
}


def push_breakdown(path: Path) -> str:
    """Where a profiled push spent its wall time, by shipit's engine and registry calls."""
    total, parts, rest = proc.cprofile_breakdown(path, ENGINE_CALLS)
    shown = [f"{label} {seconds:.2f} s ({count}x)" for label, seconds, count in parts]
    shown.append(f"everything else (interpreter, imports, config, tags) {rest:.2f} s")
    return f"under cProfile the push took {total:.2f} s: " + "; ".join(shown)


# ------------------------------------------------------------------------------ 3


def _gzip_seconds(stream: Any) -> float:
    """Seconds to gzip ``stream`` at level 6 (one core, like the engine's Go gzip default),
    the compression alone."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    seconds = 0.0
    while data := stream.read(1 << 20):
        start = time.perf_counter()
        compressor.compress(data)
        seconds += time.perf_counter() - start
    start = time.perf_counter()
    compressor.flush()
    return seconds + time.perf_counter() - start


def layer_sizes_and_gzip(b: Bench, reference: str) -> tuple[list[int], float]:
    """``docker save`` the image, then gzip every layer tar and time the compression alone."""
    path = b.tmp / "save.tar"
    with path.open("wb") as handle:
        for chunk in b.client.images.get(reference).save(named=False):
            handle.write(chunk)
    sizes: list[int] = []
    seconds = 0.0
    try:
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                stream = archive.extractfile(member) if member.isfile() else None
                if stream is not None and member.name.endswith("layer.tar"):
                    sizes.append(member.size)
                    seconds += _gzip_seconds(stream)
    finally:
        path.unlink(missing_ok=True)
    return sorted(sizes, reverse=True), seconds


def _fresh_push_notes(
    a: Side, docker: Side, sizes: list[int], gzip_s: float, breakdown: Breakdown
) -> list[str]:
    total_mb = sum(sizes) / 1e6
    floor_mbps = total_mb / gzip_s if gzip_s else 0.0
    return [
        "Fresh = a new empty `docker-registry` for every run (started and stopped outside "
        "the timing), so every layer really uploads; the registry-qualified local tag is "
        "removed after each run on both sides. shipit also confirms the pushed digest "
        "(the engine's distribution inspect) - `docker push` does not.",
        f"Uncompressed layer bytes: {total_mb:.1f} MB in {len(sizes)} layers (largest "
        + ", ".join(f"{s / 1e6:.1f}" for s in sizes[:4])
        + " MB).",
        f"Throughput (uncompressed MB / median wall): shipit {total_mb / a.median:.1f} MB/s, "
        f"docker {total_mb / docker.median:.1f} MB/s.",
        f"Floor: gzip level 6 of the same layer tars (`docker save`, Python zlib, one core) "
        f"took {gzip_s:.2f} s = {floor_mbps:.1f} MB/s. The engine gzips every layer "
        "it uploads (Go's compress/gzip at its default level, one core per layer) in line "
        "with the upload, so a fresh push cannot be much faster than compressing alone. "
        f"shipit's push runs at {total_mb / a.median / floor_mbps * 100:.0f}% of the gzip "
        f"floor's throughput ({a.median / gzip_s:.2f}x the floor time).",
        "Time breakdown - "
        + breakdown.describe("shipit push", "shipit")
        + "; "
        + breakdown.describe("docker push", "docker CLI + sh")
        + ".",
    ]


def _fresh_push_next_step(a: Side, docker: Side, breakdown: Breakdown, prof: Path) -> str:
    own = breakdown.median("shipit push", "command")
    dockerd = breakdown.median("shipit push", "dockerd") - breakdown.median(
        "docker push", "dockerd"
    )
    return (
        f"the median gap is {a.median - docker.median:.2f} s; shipit's own process used "
        f"{own:.2f} CPU-s (interpreter, imports, stream parsing) and dockerd {dockerd:+.2f}"
        " CPU-s more than for `docker push`; "
        + push_breakdown(prof)
        + f" (`docker push` alone: median {docker.median:.2f} s). Whatever the engine push "
        "itself costs beyond `docker push` is the engine's (same API call); shipit's share "
        "is the rest: keep imports lazy and drop the digest round trip when the push "
        "stream already reported the digest."
    )


def fresh_push(b: Bench) -> list[CaseResult]:
    breakdown = Breakdown()

    def docker_push(regs: list[Any]) -> list[str]:
        ref = f"{regs[0].address}/{SAMPLE}:latest"
        return ["sh", "-c", f"docker tag {SAMPLE}:latest {ref} && docker push {ref}"]

    samples = b.measure(
        {
            "shipit": push_side(b, 1, shipit_push(b), breakdown, "shipit push"),
            "docker": push_side(b, 1, docker_push, breakdown, "docker push"),
        }
    )
    breakdown.drop_warmup(b.warmup)
    sizes, gzip_seconds = layer_sizes_and_gzip(b, f"{SAMPLE}:latest")
    a = Side("shipit push", show(b.shipit(*push_args([PORT]))), samples["shipit"])
    docker = Side(
        "docker tag + docker push",
        f"docker tag {SAMPLE}:latest {PORT}/{SAMPLE}:latest && docker push ...",
        samples["docker"],
    )
    notes = _fresh_push_notes(a, docker, sizes, gzip_seconds, breakdown)
    result = comparison(
        "3", "Fresh push: shipit push vs docker push", a, docker, Target("<=", 1.05), notes=notes
    )
    if result.missed:
        result.profile, prof = profile_push(b, push_args, 1)
        result.next_step = _fresh_push_next_step(a, docker, breakdown, prof)
    return [result]


# ------------------------------------------------------------------------------ 4


def several_tags(b: Bench) -> list[CaseResult]:
    tags = [f"t{i}" for i in range(1, 6)]
    for tag in tags:
        b.tag(f"{SAMPLE}:latest", SAMPLE, tag)

    def args(regs: list[Any], count: int) -> list[str]:
        return push_args(regs, "--no-latest", *[x for t in tags[:count] for x in ("--tag", t)])

    def side(count: int) -> Callable[[], float]:
        return push_side(b, 1, lambda regs: b.shipit(*args(regs, count)), None, "")

    try:
        samples = b.measure({"5 tags": side(5), "1 tag": side(1)})
        a = Side("5 tags", show(b.shipit(*args([PORT], 5))), samples["5 tags"])
        one = Side("1 tag", show(b.shipit(*args([PORT], 1))), samples["1 tag"])
        per_tag = (a.median - one.median) / 4
        noise = abs(per_tag) * 4 < 0.05 * one.median
        result = comparison(
            "4",
            "Five tags vs one tag in a push",
            a,
            one,
            Target("<=", 1.1),
            notes=[
                "shipit pushes the first tag through the engine and adds the other four by "
                "copying the manifest through the registry API, then confirms each tag's digest.",
                f"Cost per extra tag: {per_tag * 1000:+.0f} ms (median difference / 4)"
                + (" - below the run-to-run noise of a push (see the spreads)." if noise else "."),
            ],
        )
        if result.missed:
            result.profile, prof = profile_push(b, lambda regs: args(regs, 5), 1)
            result.next_step = (
                f"each extra tag costs {per_tag * 1000:.0f} ms; "
                + push_breakdown(prof)
                + ". Each extra tag is a manifest GET + PUT through the registry API plus a "
                "digest check through the engine (distribution inspect): fetch the manifest "
                "once for all tags, and take the digest from the PUT's Docker-Content-Digest "
                "instead of asking the engine again."
            )
        return [result]
    finally:
        proc.remove_references(b.client, [f"{SAMPLE}:{t}" for t in tags])


# ------------------------------------------------------------------------------ 7


def _two_registries_notes(a: Side, seq: Side, breakdown: Breakdown) -> list[str]:
    dockerd_cpu = breakdown.median("one push, two registries", "dockerd")
    cores = os.cpu_count() or 1
    return [
        "Two fresh registries for every run on both sides.",
        "Time breakdown - "
        + breakdown.describe("one push, two registries", "shipit")
        + "; "
        + breakdown.describe("two pushes in a row", "shipit x2 + sh")
        + ".",
        f"The engine compresses each layer once per destination: the concurrent push made "
        f"dockerd use {dockerd_cpu:.1f} CPU-s in {a.median:.1f} s of wall time on {cores} "
        f"cores, so its lower bound is about {dockerd_cpu / cores:.1f} s "
        f"(ratio {dockerd_cpu / cores / seq.median:.2f}) however well shipit overlaps the two.",
    ]


def two_registries(b: Bench) -> list[CaseResult]:
    breakdown = Breakdown()

    def sequential(regs: list[Any]) -> list[str]:
        one, two = (shlex.join(b.shipit(*push_args([r.address]))) for r in regs)
        return ["sh", "-c", f"{one} && {two}"]

    samples = b.measure(
        {
            "concurrent": push_side(b, 2, shipit_push(b), breakdown, "one push, two registries"),
            "sequential": push_side(b, 2, sequential, breakdown, "two pushes in a row"),
        }
    )
    breakdown.drop_warmup(b.warmup)
    a = Side(
        "--registry A --registry B",
        show(b.shipit(*push_args([f"{PORT}_A", f"{PORT}_B"]))),
        samples["concurrent"],
    )
    seq = Side(
        "push A, then push B",
        f"{show(b.shipit(*push_args([f'{PORT}_A'])))} && {show(b.shipit(*push_args([f'{PORT}_B'])))}",
        samples["sequential"],
    )
    result = comparison(
        "7",
        "Two registries at once vs one after the other",
        a,
        seq,
        Target("<=", 0.7),
        notes=_two_registries_notes(a, seq, breakdown),
    )
    if result.missed:
        result.profile = (
            profile_push(b, push_args, 2)[0]
            + "\n(cProfile sees the main thread only: the pushes run in two worker threads, so "
            "the CPU breakdown above is the better picture.)"
        )
        result.next_step = (
            "if dockerd's CPU-s / cores is close to the concurrent wall time, the push is "
            "CPU-bound in the engine's gzip and only fewer compressions can help: push the "
            "layers once and copy them registry-to-registry (cross-registry blob copy through "
            "the registry API) instead of letting the engine compress twice."
        )
    return [result]


# ------------------------------------------------------------------------------ 10


def _terminal_notes(runs: dict[str, list[Run]]) -> list[str]:
    """What each progress side wrote to its terminal, and its own CPU time (from wait4)."""
    kib = {key: statistics.median(len(r.output) for r in rs) / 1024 for key, rs in runs.items()}
    escapes = statistics.median(r.output.count("\x1b[") for r in runs["live"])
    live, quiet = (_cpu_median(runs, key) for key in ("live", "quiet"))
    return [
        "Both sides run on a pseudo-terminal (120x40, TERM=xterm-256color, no CI variable), "
        "so the only difference is the rich live view; fresh registry per run.",
        f"The live side wrote a median of {kib['live']:.1f} KiB to the terminal "
        f"({escapes:.0f} escape sequences); --quiet wrote {kib['quiet']:.1f} KiB.",
        f"shipit's own CPU time (user + system, from wait4): live median {live:.2f} s, "
        f"--quiet {quiet:.2f} s - the rendering costs {live - quiet:+.2f} CPU-s on a 2-core "
        "machine where the engine's gzip keeps one core busy.",
    ]


def _cpu_median(runs: dict[str, list[Run]], key: str) -> float:
    return statistics.median(r.cpu_seconds for r in runs[key])


def _progress_next_step(a: Side, quiet: Side, extra_cpu: float, prof: Path) -> str:
    render_s, render_calls = proc.cprofile_lookup(prof, proc.where("reporter|live", "_render"))
    gap = a.median - quiet.median
    noise = max(spread(a.samples), spread(quiet.samples))
    advice = (
        "Import rich's live view only at the first progress event and draw the layer table as "
        "one Text instead of a Table of ProgressBars."
    )
    if extra_cpu < gap:
        advice = (
            f"The CPU cost is below the wall-time gap and the runs spread {noise:.0%}, so the "
            "gap is mostly noise or contention for the second core: re-run with more runs "
            "(`--only 10 --runs 15`) to confirm. If it holds, import rich's live view only "
            "at the first progress event and draw the layer table as one Text instead of a "
            "Table of ProgressBars."
        )
    return (
        f"the median gap is {gap:.2f} s ({gap / quiet.median:.1%} of a --quiet push), and "
        f"the live view's extra CPU time is {extra_cpu:+.2f} s "
        f"({extra_cpu / quiet.median:.1%} of it); the main thread spent {render_s:.3f} s "
        f"in `LiveView._render` ({render_calls} calls: it redraws from the event stream at "
        "most every 0.25 s, with no refresh thread). " + advice
    )


def progress_rendering(b: Bench) -> list[CaseResult]:
    env, cwd = b.env(TERM="xterm-256color"), b.workdir("progress")
    runs: dict[str, list[Run]] = {"live": [], "quiet": []}

    def side(key: str, *extra: str) -> Callable[[], float]:
        def run() -> float:
            runs[key].append(push_once(b, 1, shipit_push(b, *extra), cwd=cwd, env=env, pty=True))
            return runs[key][-1].seconds

        return run

    samples = b.measure({"live": side("live"), "quiet": side("quiet", "--quiet")})
    runs = {key: series[1:] if b.warmup else series for key, series in runs.items()}
    cmd = show(b.shipit(*push_args([PORT])))
    a = Side("live view (pty)", cmd + "  # on a pseudo-terminal", samples["live"])
    quiet = Side("--quiet (pty)", cmd + " --quiet  # on a pseudo-terminal", samples["quiet"])
    result = comparison(
        "10",
        "Progress rendering: live view vs --quiet",
        a,
        quiet,
        Target("<=", 1.02),
        notes=_terminal_notes(runs),
    )
    if result.missed:
        result.profile, prof = profile_push(b, push_args, 1, pty=True)
        extra_cpu = _cpu_median(runs, "live") - _cpu_median(runs, "quiet")
        result.next_step = _progress_next_step(a, quiet, extra_cpu, prof)
    return [result]
