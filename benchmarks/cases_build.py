"""BuildKit build cases (issues 11 and 12): shipit build against `DOCKER_BUILDKIT=1 docker build`
(the Debian 20.10 CLI: BuildKit with a session and file sync), sides alternated in one run, each
with the floor of a Python client: the interpreter importing the modules a shipit build imports.

11 inner-loop rebuild of the sample app after a one-line change in app.py; 12 no-op rebuild of
the large context of case 2; 13 rebuild of a 191 MiB context after one small file changed (also
against shipit's legacy builder); 14 cold build of the sample app (BuildKit's cache emptied).
Registered QEMU emulators cost every BuildKit build, so the cases run with emulation off.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import proc
from benchmarks.bench import Bench
from benchmarks.cases_context import context_sizes, make_context
from benchmarks.names import build_names
from benchmarks.proc import PYTHON, SHIPIT, show, timed
from benchmarks.stats import CaseResult, Side, Target, comparison, median

PEER = proc.BUILDKIT_CLI
BINFMT = Path("/proc/sys/fs/binfmt_misc")
ISSUE_11 = "issue 11, BuildKit through the Engine API"
ISSUE_12 = "issue 12, file sync"

# ------------------------------------------------------------------------------ emulation


@contextlib.contextmanager
def emulation_off(root: Path = BINFMT) -> Iterator[str]:
    """Switch registered QEMU emulators off for the block (binfmt_misc ``status`` 0), restored
    afterwards even on error; yields what the report says about emulation."""
    status = root / "status"
    if not status.exists():
        yield "off: binfmt_misc is not mounted here, so no emulator is registered"
        return
    names = sorted(p.name for p in root.iterdir() if p.name not in ("register", "status"))
    registered = ", ".join(names) or "none"
    if status.read_text().strip() != "enabled":
        yield f"off: binfmt_misc was already disabled (registered: {registered})"
        return
    try:
        status.write_text("0")
    except OSError as exc:
        yield f"**on**: could not disable binfmt_misc ({exc}); registered: {registered}"
        return
    try:
        yield f"off: binfmt_misc disabled for the case and re-enabled after (registered: {registered})"
    finally:
        status.write_text("1")


# ------------------------------------------------------------------------------ floor


def build_imports(b: Bench, command: Sequence[str], cwd: Path) -> tuple[list[str], str]:
    """The modules a shipit build imports (``-X importtime`` of one untimed run of
    ``command``, top-level entries) and that run's output."""
    run = timed([PYTHON, "-X", "importtime", *command], env=b.env(), cwd=cwd)
    modules = [m for _s, _c, depth, m in proc.parse_importtime(run.output) if depth == 0]
    return [m for m in dict.fromkeys(modules) if not m.endswith("__main__")], run.output


def heaviest(importtime: str, top: int = 6) -> str:
    """The build's slowest top-level imports by cumulative time, e.g. ``grpc 61 ms``."""
    rows = [row for row in proc.parse_importtime(importtime) if row[2] == 0]
    rows.sort(key=lambda row: row[1], reverse=True)
    return ", ".join(f"{module} {cumul / 1000:.0f} ms" for _s, cumul, _d, module in rows[:top])


# The libraries the project's stack fixes for a build (Typer for the CLI, docker-py for the
# engine, grpcio for a BuildKit session): what any client built on it imports, shipit's own
# modules aside.
STACK_MODULES = ("typer", "docker", "grpc")


def stack_modules(importtime: str) -> list[str]:
    """The stack's libraries a build imports (at any depth of ``-X importtime``'s tree)."""
    found = {module for _s, _c, _depth, module in proc.parse_importtime(importtime)}
    return [m for m in STACK_MODULES if m in found]


def floor_command(modules: Sequence[str]) -> list[str]:
    """An interpreter importing ``modules`` in the order a build did, and nothing else."""
    code = (
        "import importlib\n"
        f"for name in {list(modules)!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        pass\n"
    )
    return [PYTHON, "-c", code]


_LEGACY_STEP = re.compile(r"^\s*Step \d+/\d+ :", re.MULTILINE)


def builder_of(output: str) -> str:
    """Which builder a shipit build's output shows: legacy (``Step N/M :``) or BuildKit."""
    return "the legacy builder" if _LEGACY_STEP.search(output) else "BuildKit"


# ------------------------------------------------------------------------------ the runner


@dataclass
class BuildSpec:
    """One build case: what both sides build, what happens (untimed) before each run, targets."""

    key: str
    title: str
    case: str
    cwd: Path
    context: str
    shipit_args: list[str] = field(default_factory=list)
    docker_args: list[str] = field(default_factory=list)
    targets: list[tuple[str, Target]] = field(default_factory=list)
    before: Callable[[str], None] | None = None
    legacy_side: bool = False
    runs: int | None = None
    warmup: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> tuple[str, str]:
        return build_names(self.case)

    def shipit_cmd(self) -> list[str]:
        return [SHIPIT, "build", self.context, "--name", self.names[0], *self.shipit_args]

    def docker_cmd(self) -> list[str]:
        tag = ["-t", f"{self.names[1]}:latest"]
        return [PEER, "build", *tag, *self.docker_args, self.context]


@dataclass
class BuildRun:
    b: Bench
    spec: BuildSpec
    samples: dict[str, list[float]]
    modules: list[str]
    heaviest: str
    builder: str
    emulation: str
    stack: list[str]


def _side(
    b: Bench, spec: BuildSpec, label: str, command: list[str], env: dict[str, str], *tags: str
) -> Callable[[], float]:
    def run() -> float:
        if spec.before is not None:
            spec.before(label)
        seconds = timed(command, env=env, cwd=spec.cwd).seconds
        b.remember(*tags)  # the tags move every run: remember each image they named
        return seconds

    return run


def _measure(b: Bench, spec: BuildSpec) -> BuildRun:
    shipit_name, docker_name = spec.names
    shipit_tags = (f"{shipit_name}:latest", f"{shipit_name}:buildcache")
    with emulation_off() as emulation:
        if spec.before is not None:
            spec.before("shipit")
        modules, output = build_imports(b, spec.shipit_cmd(), spec.cwd)
        b.remember(*shipit_tags)
        sides = {
            "shipit": _side(b, spec, "shipit", spec.shipit_cmd(), b.env(), *shipit_tags),
            "docker": _side(
                b,
                spec,
                "docker",
                spec.docker_cmd(),
                b.env(DOCKER_BUILDKIT="1"),
                f"{docker_name}:latest",
            ),
            "floor": _side(b, spec, "floor", floor_command(modules), b.env()),
            "stack": _side(b, spec, "stack", floor_command(stack_modules(output)), b.env()),
        }
        if spec.legacy_side:
            legacy_env = b.env(DOCKER_BUILDKIT="0")
            sides["legacy"] = _side(b, spec, "legacy", spec.shipit_cmd(), legacy_env, *shipit_tags)
        samples = b.measure(sides, runs=spec.runs or b.cheap_runs, warmup=spec.warmup)
    return BuildRun(
        b, spec, samples, modules, heaviest(output), builder_of(output), emulation,
        stack_modules(output),
    )  # fmt: skip


def _verdicts(ratio: float, targets: Sequence[tuple[str, Target]]) -> str:
    return "; ".join(
        f"{target.describe()} ({issue}): {'met' if target.met(ratio) else 'missed'}"
        for issue, target in targets
    )


def _result(run: BuildRun) -> list[CaseResult]:
    spec, samples = run.spec, run.samples
    shipit, docker, floor = (median(samples[k]) for k in ("shipit", "docker", "floor"))
    a = Side("shipit build", show(spec.shipit_cmd()), samples["shipit"])
    peer = Side(
        "docker build (BuildKit)", "DOCKER_BUILDKIT=1 " + show(spec.docker_cmd()), samples["docker"]
    )
    notes = [
        *spec.notes,
        f"Targets: {_verdicts(shipit / docker, spec.targets)}.",
        f"Floor, measured alternately with the sides: an interpreter importing the "
        f"{len(run.modules)} top-level modules a shipit build imports (read off `python -X "
        f"importtime` of the same build), nothing else: median {floor:.3f} s = "
        f"{floor / docker:.2f}x docker build; shipit's build is {shipit - floor:+.3f} s over "
        f"its floor. Slowest of those imports (cumulative, one untimed run): {run.heaviest}.",
        _stack_note(run, docker),
        f"shipit built with {run.builder} (its default here); QEMU emulation: {run.emulation}.",
    ]
    result = comparison(spec.key, spec.title, a, peer, spec.targets[-1][1], notes=notes)
    if result.missed:
        result.profile, result.next_step = _explain(run)
    results = [result]
    if spec.legacy_side:
        results.append(_legacy_result(run))
    return results


def _stack_note(run: BuildRun, docker: float) -> str:
    """What the stack's own imports leave of the target, for any client built on it."""
    stack = median(run.samples["stack"])
    limit = max(target.value for _issue, target in run.spec.targets) * docker
    names = ", ".join(run.stack)
    return (
        f"Stack floor, measured alternately too: an interpreter importing only {names} (the "
        f"libraries the stack fixes for this build), nothing of shipit: median {stack:.3f} s = "
        f"{stack / docker:.2f}x docker build. Under the loosest target ({limit:.3f} s) that "
        f"leaves {limit - stack:.3f} s for the engine's build and everything else a client on "
        f"this stack does; docker's whole build, its own client included, took {docker:.3f} s."
    )


NEXT = {
    "the legacy builder": "shipit still builds with the legacy builder here: the context goes up "
    "as a whole tar, the engine unpacks it before any step, and each label is a step of its "
    "own. Building through BuildKit (issue 11) is the next step, then the context through "
    "file sync (issue 12) so that only changed files travel.",
    "BuildKit": "shipit builds with BuildKit; what is left over the floor is its own work "
    "before and after the engine's (context walk, session set-up, trace decoding, tagging) "
    "and, for a context sent as a tar, the upload BuildKit re-reads on every build: check "
    "that the context went through file sync (issue 12; `-v` says which path was used).",
}


def _explain(run: BuildRun) -> tuple[str, str]:
    """(profile, next step) of a missed build target: one more shipit build under cProfile."""
    spec, b = run.spec, run.b
    if spec.before is not None:
        spec.before("shipit")
    with emulation_off():
        out, profiled = b.profile(spec.shipit_cmd()[1:], spec.cwd)
    b.remember(f"{spec.names[0]}:latest", f"{spec.names[0]}:buildcache")
    engine, calls = proc.cprofile_lookup(out, proc.where("engine|buildkit", r"\w*build\w*"))
    shipit, docker, floor, stack = (
        median(run.samples[k]) for k in ("shipit", "docker", "floor", "stack")
    )
    profile = proc.format_cprofile(out) + f"\n(wall {profiled.seconds:.3f} s under cProfile)"
    return profile, (
        f"shipit's median {shipit:.3f} s against docker's {docker:.3f} s. The floor (the "
        f"interpreter and a build's imports) is {floor:.3f} s, so a Python client cannot go "
        f"below {floor / docker:.2f}x here unless it imports less; under cProfile shipit "
        f"spent {engine:.3f} s in the engine's build call ({calls} call(s)) and the rest "
        f"({profiled.seconds - engine:.3f} s of {profiled.seconds:.3f} s wall) starting, "
        f"importing and preparing. The stack floor plus that engine call is "
        f"{stack + engine:.3f} s = {(stack + engine) / docker:.2f}x (the call is mostly "
        f"waiting for the engine; shipit reads the trace in it and, with file sync, serves the "
        f"context). {NEXT.get(run.builder, '')}"
        + (
            f" shipit asked the engine for {calls} builds where docker build makes one: the "
            "image, then its builder stage as NAME:buildcache. With BuildKit's inline cache "
            "metadata on the image, measure whether that second build still pays (issue 11, "
            "item 6) or can be skipped when nothing asks for the builder-stage image."
            if calls > 1
            else ""
        )
    )


def _legacy_result(run: BuildRun) -> CaseResult:
    spec, samples = run.spec, run.samples
    legacy = Side(
        "shipit build, legacy builder",
        "DOCKER_BUILDKIT=0 " + show(spec.shipit_cmd()),
        samples["legacy"],
    )
    same = run.builder == "the legacy builder"
    result = comparison(
        f"{spec.key}b",
        spec.title.replace("(BuildKit CLI)", "").strip() + ": shipit vs its legacy builder",
        Side("shipit build (default builder)", show(spec.shipit_cmd()), samples["shipit"]),
        legacy,
        Target("<=", 1.0),
        notes=[
            "Until the context goes through file sync, shipit's default build of this context "
            "must not be slower than its legacy build; measured alternately in the same run as "
            f"case {spec.key}. The shipit side built with {run.builder}"
            + (
                ": both sides run the same builder, so the ratio is noise around 1."
                if same
                else "."
            )
        ],
    )
    if result.missed:
        result.next_step = (
            "BuildKit re-reads a context sent as a tar body on every build (the upload is not "
            "cached), so until the context goes through file sync (issue 12) a large context "
            "must stay on the legacy builder's path or be synced: check with -v which path "
            "the build took."
        )
    return result


def remove_images(b: Bench, names: Sequence[str]) -> None:
    """Every tag of the case's repositories (latest, shipit's buildcache), and the untagged
    images its runs left behind."""
    references = proc.bench_references(b.client, lambda repository: repository in names)
    b.remember(*references)
    proc.remove_references(b.client, references)
    b.remove_created()


def run_build_case(b: Bench, spec: BuildSpec) -> list[CaseResult]:
    try:
        return _result(_measure(b, spec))
    finally:
        remove_images(b, spec.names)


# ------------------------------------------------------------------------------ cases


def _sample_copy(b: Bench, name: str) -> Path:
    root = b.workdir(name)
    shutil.copytree(proc.REPO / "sample_app", root / "app")
    return root


class OneLineChange:
    """Before each build: app.py gets a new last line, so the build copies a changed file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.original = path.read_text()
        self.count = 0

    def __call__(self, label: str) -> None:
        if label != "floor":
            self.count += 1
            self.path.write_text(self.original + f"# benchmark change {self.count}\n")


def inner_loop(b: Bench) -> list[CaseResult]:
    root = _sample_copy(b, "inner")
    build_arg = b.build_arg()
    spec = BuildSpec(
        "11",
        "Inner-loop rebuild of the sample app after a one-line change (BuildKit CLI)",
        "inner",
        root,
        "app",
        shipit_args=build_arg,
        docker_args=build_arg,
        targets=[(ISSUE_11, Target("<=", 2.0)), (ISSUE_12, Target("<=", 1.5))],
        before=OneLineChange(root / "app" / "app.py"),
        notes=[
            "A copy of sample_app/ (multi-stage Dockerfile, base "
            f"`{b.python_image}`); before every build (untimed) app.py gets a new last line, "
            "so each build re-runs `COPY gunicorn.conf.py app.py ./` and what follows, and "
            "takes everything before from its cache (warmed by an untimed first build of each "
            "side).",
        ],
    )
    return run_build_case(b, spec)


def noop_context(b: Bench) -> list[CaseResult]:
    excluded, included = context_sizes(b.quick)
    root = b.workdir("noop")
    make_context(root, excluded, included)
    spec = BuildSpec(
        "12",
        f"No-op rebuild of the large context ({excluded + included:,} files, {excluded:,} "
        "ignored; BuildKit CLI)",
        "noop",
        root,
        "app",
        targets=[(ISSUE_11, Target("<=", 2.0)), (ISSUE_12, Target("<=", 1.5))],
        notes=[
            "The context of case 2 (`FROM scratch` + `COPY . /app`, node_modules/ ignored by "
            ".dockerignore), unchanged between builds: every build after the untimed first one "
            "is a cache hit.",
        ],
    )
    return run_build_case(b, spec)


def make_big_context(root: Path, files: int, size: int) -> Path:
    """``files`` data files of ``size`` random bytes under data/, and app.txt."""
    ctx = root / "app"
    (ctx / "data").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY data /data\nCOPY app.txt /app.txt\n")
    (ctx / "app.txt").write_text("0\n")
    for i in range(files):
        (ctx / "data" / f"blob-{i:02d}.bin").write_bytes(os.urandom(size))
    return ctx


def big_context(b: Bench) -> list[CaseResult]:
    files, size = (20, 1_000_000) if b.quick else (20, 10_000_000)
    root = b.workdir("big")
    ctx = make_big_context(root, files, size)
    counter = iter(range(1, 1 << 30))

    def touch(label: str) -> None:
        if label != "floor":
            (ctx / "app.txt").write_text(f"{next(counter)}\n")

    spec = BuildSpec(
        "13",
        f"Rebuild of a {files * size / 2**20:.0f} MiB context after one small file changed "
        "(BuildKit CLI)",
        "big",
        root,
        "app",
        targets=[(ISSUE_12, Target("<=", 1.5))],
        before=touch,
        legacy_side=True,
        runs=b.runs,
        notes=[
            f"{files} data files of {size / 1e6:g} MB (random bytes) under data/ and a small "
            "app.txt; `FROM scratch`, `COPY data /data`, `COPY app.txt /app.txt`. Before "
            "every build (untimed) app.txt changes, so each build re-runs the last COPY and "
            "takes `COPY data` from its cache. A client that sends the context as a tar "
            "uploads all of it every time; the docker CLI's file sync sends only what "
            "changed. A third side runs shipit with `DOCKER_BUILDKIT=0` (its legacy builder): "
            "case 13b.",
        ],
    )
    return run_build_case(b, spec)


def cold_build(b: Bench) -> list[CaseResult]:
    root = _sample_copy(b, "cold")
    names = build_names("cold")

    def empty_cache(label: str) -> None:
        if label == "floor":
            return
        timed([PEER, "builder", "prune", "-af"], env=b.env(), cwd=root)
        remove_images(b, names)

    args = [*b.build_arg(), "--no-cache"]
    spec = BuildSpec(
        "14",
        "Cold build of the sample app (BuildKit CLI)",
        "cold",
        root,
        "app",
        shipit_args=args,
        docker_args=args,
        targets=[(ISSUE_11, Target("<=", 1.1))],
        before=empty_cache,
        runs=min(b.runs, 5),
        warmup=False,
        notes=[
            "Cold: before every build of either side (untimed) the harness runs `docker "
            "builder prune -af` (this empties the engine's whole BuildKit cache, shared with "
            "anything else building on it: the harness does it only here) and removes both "
            "sides' images; both sides also pass --no-cache, which keeps the legacy builder "
            f"off the layers of earlier builds. The base image `{b.python_image}` stays (it "
            "cannot be pulled here), so the builds install the requirements from PyPI and "
            "copy the app. Fewer runs than the other cases (each build takes seconds), and no "
            "warm-up run: an untimed shipit build (to read its imports) comes first.",
        ],
    )
    return run_build_case(b, spec)
