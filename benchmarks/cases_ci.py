"""Case 6: a CI rebuild after a code change, ``--cache-from`` a pushed image vs no cache, each
run on an engine emptied of the case's images (an ephemeral runner)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import proc
from benchmarks.bench import Bench
from benchmarks.names import CI_NAME
from benchmarks.proc import show, timed
from benchmarks.stats import CaseResult, Side, Target, comparison

TITLE = "CI rebuild after a code change: --cache-from vs no cache"


def _is_ci_repo(repository: str) -> bool:
    return repository == CI_NAME or repository.endswith("/" + CI_NAME)


_BUILDKIT_STEP = re.compile(r"^#(\d+) \[([^\]]+)\] (.+)$")
_BUILDKIT_CACHED = re.compile(r"^#(\d+) CACHED\b")


def build_steps(output: str) -> list[tuple[str, bool]]:
    """(step, cached) for every Dockerfile step of a (verbose) shipit build's output, in order:
    the legacy builder's ``Step 2/9 : RUN ...`` then ``Using cache``, or BuildKit's plain
    ``#5 [builder 2/4] RUN ...`` then ``#5 CACHED``."""
    steps: list[tuple[str, bool]] = []
    vertex: dict[str, int] = {}
    for line in output.splitlines():
        text = line.strip()
        step, cached = _BUILDKIT_STEP.match(text), _BUILDKIT_CACHED.match(text)
        if text.startswith("Step ") and " : " in text:
            steps.append((" ".join(text.partition(" : ")[2].split())[:70], False))
        elif "Using cache" in text and steps:
            steps[-1] = (steps[-1][0], True)
        elif step:
            name, known = " ".join(step.group(3).split())[:70], vertex.get(step.group(1))
            if step.group(1) == "1" or (known is not None and steps[known][0] != name):
                vertex = {}  # vertex 1 again, or a number naming another step: the next build
            if step.group(2) != "internal" and step.group(1) not in vertex:
                vertex[step.group(1)] = len(steps)
                steps.append((name, False))
        elif cached and cached.group(1) in vertex:
            index = vertex[cached.group(1)]
            steps[index] = (steps[index][0], True)
    return steps


def cached_steps(output: str) -> list[str]:
    """The build steps a (verbose) shipit build reported as 'Using cache', in order."""
    return [step for step, cached in build_steps(output) if cached]


def rebuilt_steps(output: str) -> list[str]:
    """Steps that ran (no cache hit), leaving out FROM/ARG/LABEL-only bookkeeping."""
    skip = ("FROM ", "ARG ", "LABEL ")
    return [s for s, cached in build_steps(output) if not cached and not s.startswith(skip)]


def uses_buildkit(output: str) -> bool:
    """Whether a (verbose) shipit build's output shows BuildKit's steps."""
    return any(_BUILDKIT_STEP.match(line.strip()) for line in output.splitlines())


def empty_engine(b: Bench, buildkit: bool = False) -> int:
    """Remove the CI image, its builder cache image, the pulled cache images and their
    untagged layers, and with BuildKit its build cache (`docker builder prune -af`: the whole
    engine's); returns how many images labelled for the case are left (should be 0)."""
    if buildkit:
        timed([proc.BUILDKIT_CLI, "builder", "prune", "-af"], env=b.env(), cwd=b.tmp)
    proc.remove_bench_images(b.client, _is_ci_repo)
    label = f"io.shipit.image={CI_NAME}"
    # The low-level listing: the high-level one fetches each image again and fails when
    # something else on this shared engine removes one in between.
    dangling = b.client.api.images(all=True, quiet=True, filters={"dangling": True, "label": label})
    proc.remove_references(b.client, dangling)
    b.remove_created()  # unlabelled leftovers (e.g. a builder stage rebuilt by --no-cache)
    return len(b.client.api.images(all=True, quiet=True, filters={"label": label}))


@dataclass
class Steps:
    """Per side: cache hits of every run, and the first run's cached and rebuilt steps."""

    hits: dict[str, list[int]] = field(default_factory=lambda: {"cache": [], "none": []})
    first_hits: dict[str, list[str]] = field(default_factory=dict)
    first_rebuilt: dict[str, list[str]] = field(default_factory=dict)
    leftovers: list[int] = field(default_factory=list)
    buildkit: bool = False  # shipit built with BuildKit: its build cache is emptied too

    def add(self, key: str, output: str) -> None:
        steps = cached_steps(output)
        self.hits[key].append(len(steps))
        self.first_hits.setdefault(key, steps)
        self.first_rebuilt.setdefault(key, rebuilt_steps(output))

    def listed(self, table: dict[str, list[str]], key: str) -> str:
        return "; ".join(f"`{x}`" for x in table.get(key, []))


def _setup(b: Bench, root: Path, registry: str, env: dict[str, str]) -> bool:
    """Build the copy (no cache: its layers are its own), push it with its builder stage, then
    change its code: the pushed image predates the change. True when shipit built with BuildKit."""
    b.log("case 6 setup: build (no cache), push with --push-cache")
    build = ["build", "app", "--name", CI_NAME, "--no-cache", *b.build_arg(), "-v"]
    setup = timed(b.shipit(*build), env=env, cwd=root)
    b.remember(output=setup.output)
    push = ["push", "--registry", registry, "--name", CI_NAME, "--push-cache"]
    timed(b.shipit(*push), env=env, cwd=root)
    app_py = root / "app" / "app.py"
    app_py.write_text(app_py.read_text() + "\n# benchmark: a code-only change\n")
    buildkit = uses_buildkit(setup.output)
    empty_engine(b, buildkit)
    return buildkit


LEGACY_PASSES = (
    "shipit builds the `builder` target first and then the whole file; with --no-cache the "
    "second pass reuses only the builder steps it has just built, so the no-cache side "
    "installs the requirements from PyPI once, as a CI runner without cache would."
)
BUILDKIT_PASSES = (
    "shipit builds the whole file and then the `builder` target (for `NAME:buildcache`), "
    "whose steps the second build takes from the first: the counts include both builds."
)


def _notes(b: Bench, steps: Steps) -> list[str]:
    notes = [
        "Setup (untimed): a copy of sample_app in a temp dir is built (`--no-cache`, "
        "so its layers are its own) and pushed with `shipit push --push-cache` "
        f"(`{CI_NAME}:latest` and the builder stage `{CI_NAME}:buildcache`) to a "
        "loopback registry; then app.py is changed in the copy.",
        "Empty engine (before every run): the image, its builder cache image, the "
        "pulled cache images and their untagged layers are removed. Approximation: "
        f"the base image `{b.python_image}` stays (it stands in for the base a real "
        "runner pulls; it cannot be pulled here), and other images on this shared "
        "engine stay.",
        f"'Using cache' steps per run: with --cache-from {steps.hits['cache']}, without "
        f"{steps.hits['none']}. "
        + (BUILDKIT_PASSES if steps.buildkit else LEGACY_PASSES)
        + " Cached steps of the first run, with "
        f"--cache-from: {steps.listed(steps.first_hits, 'cache')} - without: "
        f"{steps.listed(steps.first_hits, 'none')}. Images labelled for the case left after "
        f"each clean-up: {sorted(set(steps.leftovers))}.",
        "Steps that ran with --cache-from (first run): "
        f"{steps.listed(steps.first_rebuilt, 'cache')}.",
    ]
    if steps.buildkit:
        notes.append(
            "shipit built with BuildKit, so emptying the engine also ran `docker builder prune "
            "-af` before every run (the engine's whole build cache, as on a fresh runner)."
        )
    if any("groupadd" in step for step in steps.first_hits.get("none", [])):
        notes.append(
            "The no-cache side reused a runtime-stage step (`RUN groupadd ...`): "
            "--no-cache did not keep it from layers older than the build."
        )
    return notes


def _next_step(b: Bench, command: list[str], root: Path, steps: Steps) -> tuple[str, str]:
    """(profile, next step) of one more cached rebuild under cProfile."""
    out, profiled = b.profile(command[1:], root)
    b.remember(output=profiled.output)
    empty_engine(b, steps.buildkit)
    profile = proc.format_cprofile(out, focus=("shipit/builder.py", *proc.BOUNDARY))
    pulls, _ = proc.cprofile_lookup(out, r"_pull_cache_images")
    build, calls = proc.cprofile_lookup(out, proc.where("engine", "build"))
    copy_missed = any(s.startswith("COPY --from") for s in steps.first_rebuilt.get("cache", []))
    text = (
        f"under cProfile the cached rebuild spent {pulls:.2f} s pulling the two cache "
        f"images and {build:.2f} s in {calls} engine build calls; "
        + (
            "the pulls dominate: the engine downloads, unpacks and registers the "
            "layers of both cache images (the builder stage's venv, and the runtime "
            "image's copy of it); pull them concurrently (shipit does since it pulls "
            "with a thread pool) and keep the builder stage lean."
            if pulls > build
            else "the builds dominate: check the 'Using cache' counts above for steps that missed."
        )
    )
    if copy_missed:
        text += (
            " Also, `COPY --from=builder /opt/venv` missed the cache although the "
            "builder stage was a full cache hit, so the runtime image gets a new venv "
            "layer on every code change (and pushes it again): find out why the "
            "legacy builder does not match it against the pulled image's history "
            "(a guess to check first: the COPY's content hash covers file times, "
            "which may lose precision in the pushed layer tar)."
        )
    return profile, text


def ci_rebuild(b: Bench) -> list[CaseResult]:
    # As on a CI runner, shipit also builds the builder stage's cache image (--push-cache).
    env, root, steps = {**b.env(), "SHIPIT_CACHE_STAGE": "1"}, b.workdir("ci"), Steps()
    shutil.copytree(proc.REPO / "sample_app", root / "app")
    with b.registry() as reg:
        ref = f"{reg.address}/{CI_NAME}:latest"
        try:
            steps.buildkit = _setup(b, root, reg.address, env)
            build = ["build", "app", "--name", CI_NAME, *b.build_arg()]
            cache_cmd = b.shipit(*build, "--cache-from", ref, "-v")
            # --no-cache: this shared engine holds layers of other images built from the same
            # base and lines, which an empty CI runner would not have.
            plain_cmd = b.shipit(*build, "--no-cache", "-v")

            def side(command: list[str], key: str) -> Callable[[], float]:
                def run() -> float:
                    try:
                        result = timed(command, env=env, cwd=root)
                        b.remember(output=result.output)
                        steps.add(key, result.output)
                    finally:
                        steps.leftovers.append(empty_engine(b, steps.buildkit))
                    return result.seconds

                return run

            samples = b.measure(
                {"cache": side(cache_cmd, "cache"), "none": side(plain_cmd, "none")},
                warmup=False,
            )
            a = Side(
                "--cache-from (pulls image + buildcache)",
                show(cache_cmd).replace(reg.address, "127.0.0.1:PORT"),
                samples["cache"],
            )
            none = Side("no cache", show(plain_cmd), samples["none"])
            result = comparison("6", TITLE, a, none, Target("<=", 0.4), notes=_notes(b, steps))
            if result.missed:
                result.profile, result.next_step = _next_step(b, cache_cmd, root, steps)
            return [result]
        finally:
            empty_engine(b, steps.buildkit)
            proc.remove_references(b.client, [ref])
