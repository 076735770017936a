"""The command line: pick the cases, prepare the sample images, run, clean up, write the report."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import (
    cases_build,
    cases_ci,
    cases_context,
    cases_ecr,
    cases_local,
    cases_platforms,
    cases_push,
    machine,
    proc,
    report,
)
from benchmarks.bench import DEFAULT_PYTHON_IMAGE, Bench
from benchmarks.names import RUN_ID, SAMPLE, SAMPLE_SINGLE
from benchmarks.stats import CaseResult, errored, exit_code, format_value

DEFAULT_OUTPUT = proc.REPO / "docs" / "benchmarks.md"
# Runs per side in full mode: a push spreads 15-20% run to run here, so five runs could not
# tell a 5% target apart from noise.
FULL_RUNS = 9


@dataclass(frozen=True)
class Case:
    name: str
    number: str
    title: str
    run: Callable[[Bench], list[CaseResult]]
    needs: frozenset[str] = frozenset({"engine"})  # and "sample"/"single": images built first


WITH_SAMPLE = frozenset({"engine", "sample"})
CASES: tuple[Case, ...] = (
    Case("startup", "1", "Start-up", cases_local.startup, frozenset()),
    Case("context", "2", "Large build context", cases_context.context_build),
    Case("push", "3", "Fresh push", cases_push.fresh_push, WITH_SAMPLE),
    Case("tags", "4", "Several tags", cases_push.several_tags, WITH_SAMPLE),
    Case("ecr", "5", "ECR login", cases_ecr.ecr_login),
    Case("ci", "6", "CI rebuild with --cache-from", cases_ci.ci_rebuild),
    Case("registries", "7", "Two registries", cases_push.two_registries, WITH_SAMPLE),
    Case("size", "8", "Image size", cases_local.image_size, WITH_SAMPLE | {"single"}),
    Case("health", "9", "Time to healthy", cases_local.time_to_healthy, WITH_SAMPLE),
    Case("progress", "10", "Progress rendering", cases_push.progress_rendering, WITH_SAMPLE),
    Case("inner", "11", "Inner-loop rebuild (BuildKit CLI)", cases_build.inner_loop),
    Case("noop", "12", "No-op rebuild, large context (BuildKit CLI)", cases_build.noop_context),
    Case("bigctx", "13", "191 MiB context rebuild (BuildKit CLI)", cases_build.big_context),
    Case("cold", "14", "Cold build (BuildKit CLI)", cases_build.cold_build),
    Case("platforms", "15", cases_platforms.TITLE, cases_platforms.two_platform_release),
)


def select_cases(only: str | None) -> list[Case]:
    """``--only startup,3,ecr`` (names or numbers); every case when empty."""
    if not only:
        return list(CASES)
    wanted = {w.strip().lower() for w in only.split(",") if w.strip()}
    known = {c.name for c in CASES} | {c.number for c in CASES}
    unknown = wanted - known
    if unknown:
        raise SystemExit(
            f"unknown case(s): {', '.join(sorted(unknown))}; choose from "
            + ", ".join(f"{c.number}={c.name}" for c in CASES)
        )
    return [c for c in CASES if c.name in wanted or c.number in wanted]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="shipit's benchmark harness: real engine, loopback registries, moto's server.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI mode: 1 run per side, smallest sizes, no warm-up; writes a temp file.",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where to write the report (default: {DEFAULT_OUTPUT.relative_to(proc.REPO)} for a "
        "full run of every case, a temp file for --quick or --only)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated cases by name or number: "
        + ", ".join(f"{c.number}={c.name}" for c in CASES),
    )
    parser.add_argument("--runs", type=int, help=f"runs per side (full default {FULL_RUNS})")
    return parser.parse_args(argv)


def method_text(b: Bench, selected: Sequence[Case]) -> list[str]:
    mode = (
        "**quick** (CI): 1 run per side, smallest sizes, a warm-up only for the two cheap "
        "cases (start-up, build context) - a smoke test of the harness, not numbers to quote"
        if b.quick
        else f"**full**: {b.runs} timed runs per side ({b.cheap_runs} for the cheap start-up, "
        f"build-context, inner-loop and no-op cases; {min(b.runs, 5)} for the cold build), "
        "after one untimed warm-up run of each side (except cases 6 and 14, whose every run "
        "starts from an emptied engine or build cache)"
    )
    return [
        f"- Mode: {mode}. Sides run alternated, A B A B ..., so drift on the machine (other "
        "work, page cache, the engine's state) hits both sides alike. Each number is the "
        "median of a side's runs; a ratio is median(A) / median(B), below 1 meaning A is faster.",
        "- Every timed command is a subprocess (`subprocess.Popen`, output captured), timed "
        "with `time.perf_counter` from just before the start to its exit; the command's own "
        "CPU time comes from `wait4`, and dockerd's and the registries' from /proc/PID/stat "
        "before and after. Setup and clean-up (starting registries, removing local tags) are "
        "outside the timing.",
        "- Components are the ones the integration tests use: the Docker engine on this "
        "machine, Debian's `docker-registry` (distribution 2.8) started fresh "
        "on 127.0.0.1 by `tests.support.registry.running_registry`, and moto's server "
        "(`tests.support.moto_server.running_moto_server`) with the TLS registry behind moto's "
        "ECR host name (`running_ecr_registry`). Nothing leaves the machine, except pip "
        "reaching PyPI inside the sample app's `RUN pip install` (the image build of case 6's "
        "no-cache side, case 14 and the setup builds).",
        "- Build cases 11-14 compare `shipit build` with `DOCKER_BUILDKIT=1 /usr/bin/docker "
        "build`, the Debian 20.10 CLI's BuildKit client (a session with file sync: it sends "
        "only what changed); `/usr/local/bin/docker`, first on PATH, is a newer client without "
        "buildx that falls back to the legacy builder, so the harness names /usr/bin/docker. "
        "Registered QEMU emulators slow every BuildKit build on this engine, so these cases "
        "run with binfmt_misc disabled (restored after, even on error); each case says whether "
        "emulation was on. Case 14 runs `docker builder prune -af` before each build: it "
        "empties the engine's whole BuildKit cache, which anything else building on this "
        "engine shares.",
        "- Case 15 (two-platform release) is the opposite: it needs QEMU's aarch64 emulator, "
        "so it switches binfmt_misc and its qemu-aarch64 entry on for its runs and back to "
        "what it found after (it reports that it cannot run when none is registered); its "
        "sides, two single-platform builds and the release, run alternated like the others.",
        f"- The sample image is built once at the start with `.venv/bin/shipit build "
        f"--build-arg PYTHON_IMAGE={b.python_image} --name {SAMPLE}` (and "
        f"`-f sample_app/Dockerfile.single --name {SAMPLE_SINGLE}` for case 8); the base image "
        "is a local Debian Python image, since no image can be pulled here.",
        "- Commands run with a clean environment: no CI, SHIPIT_*, AWS_* or Docker Hub "
        "variables from the caller, a private DOCKER_CONFIG and SHIPIT_CACHE_DIR, and from a "
        "temp directory outside git (so the tag rules give just `latest`).",
        "- Noise: the machine (2 cores) and its engine are shared with whatever else runs "
        "there - other test suites may run during a benchmark - so single runs can be far off; "
        "the medians are what to compare, and the spread of each side (max - min over the "
        "median) is printed per case. Compare ratios, not absolute times.",
        f"- Image names carry this run's suffix (`-{RUN_ID}`), so two runs on one engine (CI's "
        "quick run beside a full run) never clean up each other's images; at the end the "
        "run removes every image it built or left untagged, never the `shipit.local/*` bases.",
        "- Cases run: " + ", ".join(f"{c.number} ({c.name})" for c in selected) + ".",
        "- Command lines: full `.venv/bin/python -m benchmarks` (writes docs/benchmarks.md); "
        "quick `.venv/bin/python -m benchmarks --quick` (writes a temp file, or `--output "
        "PATH`); some cases `--only NAME,NAME` (also to a temp file).",
    ]


def prepare_images(b: Bench, needs: set[str]) -> None:
    if not b.client.api.images(name=b.python_image, quiet=True):
        raise RuntimeError(f"base image {b.python_image} is missing: run .ci/setup")
    env = b.env()
    # -v: the step ids in the output let the clean-up find every image these builds make.
    if "sample" in needs:
        b.log(f"building {SAMPLE} (sample_app/Dockerfile)")
        run = proc.timed(
            b.shipit("build", *b.build_arg(), "--name", SAMPLE, "-v"), env=env, cwd=proc.REPO
        )
        b.remember(f"{SAMPLE}:latest", f"{SAMPLE}:buildcache", output=run.output)
    if "single" in needs:
        b.log(f"building {SAMPLE_SINGLE} (sample_app/Dockerfile.single)")
        single = ["-f", "sample_app/Dockerfile.single", "--name", SAMPLE_SINGLE, "-v"]
        run = proc.timed(b.shipit("build", *b.build_arg(), *single), env=env, cwd=proc.REPO)
        b.remember(f"{SAMPLE_SINGLE}:latest", output=run.output)


def _error_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return "\n".join(text.strip().splitlines()[-30:])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so SIGTERM, like Ctrl-C, still stops registries and cleans up


def make_bench(args: argparse.Namespace) -> Bench:
    b = Bench(
        quick=args.quick,
        tmp=Path(tempfile.mkdtemp(prefix="shipit-bench-")),
        python_image=os.environ.get("SHIPIT_PYTHON_IMAGE", DEFAULT_PYTHON_IMAGE),
        runs=1 if args.quick else (args.runs or FULL_RUNS),
        cheap_runs=1 if args.quick else max(15, args.runs or 0),
    )
    if args.quick and args.runs:
        b.runs = b.cheap_runs = args.runs
    return b


def connect_engine(b: Bench, needs: set[str]) -> str | None:
    """Connect to the engine and build the sample images; the error text when that failed."""
    try:
        b.client = proc.docker_client()
        b.client.ping()
        b.dockerd = proc.dockerd_pid()
        prepare_images(b, needs)
    except Exception as exc:
        error = _error_text(exc)
        b.log(f"setup failed:\n{error}")
        return error
    return None


def run_cases(b: Bench, selected: Sequence[Case]) -> list[CaseResult]:
    """Every selected case (a crash is that case's error row), then the engine clean-up."""
    needs = {need for case in selected for need in case.needs}
    results: list[CaseResult] = []
    try:
        setup_error = connect_engine(b, needs) if "engine" in needs else None
        for case in selected:
            if setup_error and "engine" in case.needs:
                results.append(errored(case.number, case.title, "setup failed:\n" + setup_error))
                continue
            b.log(f"case {case.number} ({case.name})")
            try:
                results.extend(case.run(b))
            except Exception as exc:
                b.log(f"case {case.number} failed: {exc}")
                results.append(errored(case.number, case.title, _error_text(exc)))
    finally:
        try:
            if b.client is not None:
                removed = proc.remove_bench_images(b.client)
                untagged = b.remove_created()
                b.log(f"removed {len(removed)} image tag(s), {untagged} untagged image(s)")
        except Exception as exc:  # e.g. the engine went away: the report is still written
            b.log(f"clean-up failed: {exc}")
        shutil.rmtree(b.tmp, ignore_errors=True)
    return results


def output_path(args: argparse.Namespace) -> Path:
    """--output; else docs/benchmarks.md for a full run of every case, else a temp file."""
    if args.output is not None:
        return Path(args.output)
    if args.quick or args.only:
        handle, name = tempfile.mkstemp(prefix="shipit-benchmarks-quick-", suffix=".md")
        os.close(handle)
        return Path(name)
    return DEFAULT_OUTPUT


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    selected = select_cases(args.only)
    b = make_bench(args)
    started = time.monotonic()
    load_at_start = machine.loadavg()
    results = run_cases(b, selected)
    command = ".venv/bin/python -m benchmarks" + (" --quick" if args.quick else "")
    if args.only:
        command += f" --only {args.only}"
    text = report.render(
        machine.collect(proc.VENV_BIN, load_at_start),
        results,
        method=method_text(b, selected),
        mode="quick" if args.quick else "full",
        command=command,
        duration_s=time.monotonic() - started,
    )
    output = output_path(args)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    for line in report.summary_table(results):
        print(line)
    for result in results:
        if result.status == "missed" and result.metric is not None and result.target:
            print(
                f"missed: {result.key} {format_value(result.metric, result.unit)} "
                f"(target {result.target.describe()})"
            )
    print(f"report written to {output}", file=sys.stderr)
    return exit_code(results)
