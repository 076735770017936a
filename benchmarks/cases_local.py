"""Cases that need no registry and no build: start-up (1), image size (8) and time to
healthy (9)."""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from benchmarks import proc, support
from benchmarks.bench import Bench
from benchmarks.names import SAMPLE, SAMPLE_SINGLE
from benchmarks.proc import PYTHON, SHIPIT, show, timed
from benchmarks.stats import CaseResult, Side, Target, comparison, measurement, median

# ---------------------------------------------------------------------------------------- 1


def import_delta(shipit_stderr: str, base_stderr: str, top: int = 10) -> str:
    """What ``shipit`` imports beyond the baseline's ``import typer, rich`` (``-X importtime``)."""
    base = {module for _s, _c, _d, module in proc.parse_importtime(base_stderr)}
    parsed = proc.parse_importtime(shipit_stderr)
    extra = [row for row in parsed if row[3] not in base]
    extra_self = sum(row[0] for row in extra) / 1000
    lines = [
        proc.format_importtime(shipit_stderr, top=top),
        "",
        f"Modules shipit imports that `import typer, rich` does not: {len(extra)} "
        f"({extra_self:.1f} ms own time). Slowest by cumulative time:",
        f"{'cumul ms':>9} {'self ms':>8}  module",
    ]
    for self_us, cum_us, _depth, module in sorted(extra, key=lambda r: r[1], reverse=True)[:top]:
        lines.append(f"{cum_us / 1000:9.1f} {self_us / 1000:8.1f}  {module}")
    return "\n".join(lines)


def _byte_compile_shipit() -> str:
    """Compile shipit's sources to __pycache__ (what pip does for a wheel install)."""
    import compileall

    import shipit

    package = Path(shipit.__file__).parent
    ok = compileall.compile_dir(str(package), quiet=1)
    state = "PYTHONDONTWRITEBYTECODE=" + os.environ.get("PYTHONDONTWRITEBYTECODE", "unset")
    return f"{state} here; compileall {'ok' if ok else 'FAILED'}"


def _startup_profile(b: Bench, flag: str, side_a: Side, base: Side) -> tuple[str, str]:
    """(profile, next step) of a missed start-up target: the imports shipit adds and typer's
    work, from ``-X importtime`` and cProfile."""
    env, cwd = b.env(), b.workdir("startup-profile")
    mine = timed([PYTHON, "-X", "importtime", "-m", "shipit", flag], env=env, cwd=cwd)
    theirs = timed([PYTHON, "-X", "importtime", "-c", "import typer, rich"], env=env, cwd=cwd)
    out = b.tmp / f"startup-{flag.strip('-')}.prof"
    timed(proc.cprofile_command([flag], out), env=env, cwd=cwd)
    profile = (
        import_delta(mine.output, theirs.output)
        + "\n\n"
        + proc.format_cprofile(out, top=12, focus=("shipit/", "typer/main.py", "typer/utils.py"))
    )
    params_s, params_calls = proc.cprofile_lookup(out, "get_params_from_function")
    gap_ms = (side_a.median - base.median) * 1000
    return profile, (
        f"of the {gap_ms:.0f} ms gap, the imports shipit adds are listed above, and "
        f"typer's processing of every command's annotated signature "
        f"(`typer/utils.py get_params_from_function`, {params_calls} calls) took "
        f"{params_s * 1000:.0f} ms under cProfile - work done before `{flag}` is even "
        "parsed. Answer `--version` and the top-level `--help` before typer builds the "
        "click group (e.g. a check of sys.argv in main, or lazily built subcommands), "
        "then re-measure."
    )


def startup(b: Bench) -> list[CaseResult]:
    env = b.env()
    cwd = b.workdir("startup")
    compiled = _byte_compile_shipit()
    commands = {
        "shipit --version": [SHIPIT, "--version"],
        "shipit --help": [SHIPIT, "--help"],
        "import typer, rich": [PYTHON, "-c", "import typer, rich"],
    }

    def side(command: list[str]) -> Callable[[], float]:
        return lambda: timed(command, env=env, cwd=cwd).seconds

    samples = b.measure(
        {label: side(command) for label, command in commands.items()},
        runs=b.cheap_runs,
        warmup=True,
    )
    base = Side("python -c 'import typer, rich'", show(commands["import typer, rich"]))
    base.samples = samples["import typer, rich"]
    results = []
    for key, label in (("1a", "shipit --version"), ("1b", "shipit --help")):
        side_a = Side(label, show(commands[label]), samples[label])
        result = comparison(
            key,
            f"Start-up: `{label}` vs import typer, rich",
            side_a,
            base,
            Target("<=", 1.3),
            notes=[
                f"Gap: {(side_a.median - base.median) * 1000:+.0f} ms over the bare "
                "interpreter importing typer and rich (the venv's python, same site-packages).",
                "shipit's modules are byte-compiled first, as a regular pip install does "
                f"({compiled}); `shipit` builds only the invoked command's options "
                "(`shipit.cli.app.LazyGroup`), so `--version` and `--help` build none.",
            ],
        )
        if result.missed:
            result.profile, result.next_step = _startup_profile(b, label.split()[1], side_a, base)
        results.append(result)
    return results


# ---------------------------------------------------------------------------------------- 8


def _layers(b: Bench, reference: str, top: int = 8) -> str:
    history = b.client.api.history(reference)
    lines = [f"{'MB':>8}  created by"]
    for entry in sorted(history, key=lambda h: h.get("Size", 0), reverse=True)[:top]:
        created_by = " ".join(str(entry.get("CreatedBy", "")).split())[:110]
        lines.append(f"{entry.get('Size', 0) / 1e6:8.1f}  {created_by}")
    return "\n".join(lines)


def image_size(b: Bench) -> list[CaseResult]:
    base = b.image_size(b.python_image)
    multi = b.image_size(f"{SAMPLE}:latest")
    single = b.image_size(f"{SAMPLE_SINGLE}:latest")
    added = (multi - base) / 1e6
    added_single = (single - base) / 1e6
    result = measurement(
        "8a",
        "Image size: runtime image over its base",
        added,
        "MB",
        Target("<=", 25, "MB"),
        notes=[
            f"Base `{b.python_image}`: {base / 1e6:.1f} MB; `{SAMPLE}:latest` "
            f"(sample_app/Dockerfile): {multi / 1e6:.1f} MB; MB = 10^6 bytes, the engine's "
            "uncompressed size.",
            "Largest layers of the runtime image:\n\n```text\n"
            + _layers(b, f"{SAMPLE}:latest", top=5)
            + "\n```",
        ],
    )
    if result.missed:
        result.profile = _layers(b, f"{SAMPLE}:latest")
        result.next_step = "shrink the largest layer above (the venv): drop unused packages."
    single_result = measurement(
        "8b",
        "Image size: Dockerfile.single over its base",
        added_single,
        "MB",
        None,
        notes=[
            f"`{SAMPLE_SINGLE}:latest`: {single / 1e6:.1f} MB. On this Debian base the naive "
            "single-stage image is about the same size as the multi-stage one: the base "
            "already ships pip and setuptools, so the builder stage saves little here (on "
            "python:*-slim the venv-only copy is what keeps build tools out). Its real costs "
            "are elsewhere: root user, no healthcheck, and a pip re-run on every code change.",
            "Largest layers:\n\n```text\n" + _layers(b, f"{SAMPLE_SINGLE}:latest", top=4) + "\n```",
        ],
    )
    return [result, single_result]


# ---------------------------------------------------------------------------------------- 9


def _health_ok(opener: urllib.request.OpenerDirector, url: str) -> bool:
    """One GET of ``url``: True on HTTP 200, False on any error or other answer."""
    with (
        contextlib.suppress(urllib.error.URLError, OSError, ConnectionError),
        opener.open(url, timeout=1) as response,
    ):
        return bool(response.status == 200)
    return False


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _wait_health(port: int, deadline: float) -> bool:
    opener, url = _opener(), f"http://127.0.0.1:{port}/health"
    while time.monotonic() < deadline:
        if _health_ok(opener, url):
            return True
        time.sleep(0.02)
    return False


def _smoke_url(b: Bench, image_id: str) -> str | None:
    """/health on the published port of smoke's container, once the engine lists it."""
    found = b.client.api.containers(filters={"name": "shipit-smoke-", "ancestor": image_id})
    for container in found:
        for port in container.get("Ports") or []:
            if port.get("PrivatePort") == 5000 and port.get("PublicPort"):
                return f"http://127.0.0.1:{port['PublicPort']}/health"
    return None


def _smoke_until_200(
    b: Bench, command: list[str], env: dict[str, str], cwd: Path
) -> tuple[float, proc.Run]:
    """Run ``shipit smoke``; meanwhile find its container and poll /health from outside.
    Returns (seconds from the process start to the first 200, the whole run)."""
    image_id = b.client.images.get(f"{SAMPLE}:latest").id
    opener, url, first_200 = _opener(), None, None
    deadline = time.monotonic() + 120
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        child = proc.spawn(command, env, cwd, out)
        while first_200 is None and child.poll() is None and time.monotonic() < deadline:
            if url is None:
                url = _smoke_url(b, image_id)
            elif _health_ok(opener, url):
                first_200 = time.perf_counter() - start
            time.sleep(0.02)
        code, cpu = proc.wait(child, deadline)
        seconds = time.perf_counter() - start
        out.seek(0)
        run = proc.finish(
            command, proc.Run(seconds, cpu, out.read().decode(errors="replace"), code)
        )
    if first_200 is None:
        text = run.output[-800:]
        raise RuntimeError(f"never saw /health answer 200 during `{show(command)}`:\n{text}")
    return first_200, run


HTTP_200_RE = re.compile(r"HTTP 200 after ([0-9.]+)\s*s")
HEALTHCHECK_RE = re.compile(r"healthcheck passed after ([0-9.]+)\s*s")
POLL_CMD = f"docker run -d -p 127.0.0.1:PORT:5000 {SAMPLE}:latest, then GET /health every 20 ms"
HEALTH_TITLE = "Time to healthy: smoke start to /health 200"


def _docker_run_and_poll(b: Bench, cwd: Path) -> float:
    """``docker run -d -p`` the sample image, then poll /health until 200: wall seconds."""
    env, port = b.env(), support.free_port()
    name = f"bench-health-{port}"
    command = ["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5000"]
    start = time.perf_counter()
    try:
        timed([*command, f"{SAMPLE}:latest"], env=env, cwd=cwd)
        if not _wait_health(port, time.monotonic() + 60):
            raise RuntimeError(f"{SAMPLE} never answered /health on port {port} within 60 s")
        return time.perf_counter() - start
    finally:
        timed(["docker", "rm", "-f", name], env=env, cwd=cwd, check=False)


class SmokeRuns:
    """Per smoke run: the whole command's seconds and the two moments smoke reports itself."""

    def __init__(self) -> None:
        self.totals: list[float] = []
        self.docker_health: list[float] = []
        self.own_http: list[float] = []

    def add(self, run: proc.Run) -> None:
        self.totals.append(run.seconds)
        for regex, series in ((HEALTHCHECK_RE, self.docker_health), (HTTP_200_RE, self.own_http)):
            match = regex.search(run.output)
            if match:
                series.append(float(match.group(1)))

    @staticmethod
    def _median(series: list[float]) -> str:
        return f"{statistics.median(series):.1f} s" if series else "n/a"

    def notes(self, poll: Side) -> list[str]:
        return [
            "Measured from the start of the `shipit smoke --verbose` process to the first HTTP "
            "200 from /health seen by the harness, which finds smoke's container on the engine "
            "(by name and image) and polls its published port every 20 ms while smoke runs. "
            "smoke's own report of the same moment, counted from just before it starts the "
            f"container: median {self._median(self.own_http)}. For reference, the bare `docker "
            f"run` + polling /health every 20 ms (side B) takes {median(poll.samples):.3f} s.",
            f"The whole smoke command takes a median {statistics.median(self.totals):.2f} s: it "
            f"also waits for Docker's own HEALTHCHECK to report healthy (median "
            f"{self._median(self.docker_health)} after the container starts - the sample "
            "Dockerfile's HEALTHCHECK has `--interval=5s`, so the first probe runs 5 s after "
            "start), then removes the container and network.",
        ]


def time_to_healthy(b: Bench) -> list[CaseResult]:
    env, cwd = b.env(), b.workdir("health")
    smoke_cmd = b.shipit("smoke", "--name", SAMPLE, "--verbose")
    runs = SmokeRuns()

    def smoke() -> float:
        first_200, run = _smoke_until_200(b, smoke_cmd, env, cwd)
        runs.add(run)
        return first_200

    samples = b.measure(
        {"shipit smoke": smoke, "docker run + poll": lambda: _docker_run_and_poll(b, cwd)}
    )
    smoke_side = Side(
        "shipit smoke: start to /health 200",
        show(smoke_cmd) + "  # until its container answers /health with 200",
        samples["shipit smoke"],
    )
    poll_side = Side("docker run + poll /health", POLL_CMD, samples["docker run + poll"])
    result = measurement(
        "9",
        HEALTH_TITLE,
        smoke_side.median,
        "s",
        Target("<=", 3.0, "s"),
        side=smoke_side,
        notes=runs.notes(poll_side),
    )
    result.sides.append(poll_side)
    if result.missed:
        result.next_step = (
            "compare with side B: the difference is smoke's own start (imports, network and "
            "container creation) before its first poll."
        )
    return [result]
