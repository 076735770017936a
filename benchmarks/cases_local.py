"""Cases that need no registry: start-up (1), large build context (2), image size (8) and
time to healthy (9)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from benchmarks import proc
from benchmarks.bench import Bench
from benchmarks.names import CTX_DOCKER, CTX_NAME, SAMPLE, SAMPLE_SINGLE
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
                "(`shipit.cli.LazyGroup`), so `--version` and `--help` build none.",
            ],
        )
        if result.missed:
            flag = label.split()[1]
            mine = timed([PYTHON, "-X", "importtime", "-m", "shipit", flag], env=env, cwd=cwd)
            theirs = timed(
                [PYTHON, "-X", "importtime", "-c", "import typer, rich"], env=env, cwd=cwd
            )
            out = b.tmp / f"startup-{flag.strip('-')}.prof"
            timed(proc.cprofile_command([flag], out), env=env, cwd=cwd)
            result.profile = (
                import_delta(mine.output, theirs.output)
                + "\n\n"
                + proc.format_cprofile(
                    out, top=12, focus=("shipit/", "typer/main.py", "typer/utils.py")
                )
            )
            params_s, params_calls = proc.cprofile_lookup(out, "get_params_from_function")
            gap_ms = (side_a.median - base.median) * 1000
            result.next_step = (
                f"of the {gap_ms:.0f} ms gap, the imports shipit adds are listed above, and "
                f"typer's processing of every command's annotated signature "
                f"(`typer/utils.py get_params_from_function`, {params_calls} calls) took "
                f"{params_s * 1000:.0f} ms under cProfile - work done before `{flag}` is even "
                "parsed. Answer `--version` and the top-level `--help` before typer builds the "
                "click group (e.g. a check of sys.argv in main, or lazily built subcommands), "
                "then re-measure."
            )
        results.append(result)
    return results


# ---------------------------------------------------------------------------------------- 2


def make_context(root: Path, excluded: int, included: int) -> Path:
    """``FROM scratch`` + ``COPY . /app``; ``excluded`` files under node_modules/ (ignored by
    .dockerignore) and ``included`` files under src/."""
    ctx = root / "app"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /app\n")
    (ctx / ".dockerignore").write_text("node_modules\n*.log\n")
    body = "module.exports = function () { return 42; };\n" * 4
    for i in range(excluded):
        folder = ctx / "node_modules" / f"pkg-{i // 100:04d}" / "lib"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        (folder / f"file-{i}.js").write_text(body)
    for i in range(included):
        folder = ctx / "src" / f"mod-{i // 100:03d}"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        (folder / f"file-{i}.py").write_text(f"VALUE = {i}\n" * 8)
    return ctx


def _label_args(labels: dict[str, str]) -> list[str]:
    """Labels as docker CLI flags."""
    return [arg for key, value in sorted(labels.items()) for arg in ("--label", f"{key}={value}")]


# Times shipit's packing of argv[1] three times, then writes the last tar to argv[2] (untimed).
PACK_SNIPPET = """
import shutil, sys, time
from pathlib import Path
from shipit.context import create_context_archive
root = Path(sys.argv[1])
times = []
for _ in range(3):
    start = time.perf_counter()
    archive = create_context_archive(root, root / "Dockerfile")
    files = archive.file_count
    size = archive.fileobj.seek(0, 2)
    times.append(time.perf_counter() - start)
    if len(times) < 3:
        archive.close()
with archive, open(sys.argv[2], "wb") as out:
    archive.fileobj.seek(0)
    shutil.copyfileobj(archive.fileobj, out)
print(sorted(times)[1], files, size, archive.dockerfile)
"""


# The least a Python client of the engine pays for the same build: an interpreter that imports
# docker-py and sends a tar packed beforehand (shipit's own, written once, untimed) with the
# same labels - no CLI, no packing, no output.
FLOOR_BUILD = """
import json, sys
import docker
api = docker.APIClient()
with open(sys.argv[1], "rb") as tar:
    for chunk in api.build(fileobj=tar, custom_context=True, dockerfile=sys.argv[2],
                           tag=sys.argv[3], labels=json.loads(sys.argv[4]), rm=True,
                           forcerm=True, decode=True):
        if "error" in chunk:
            sys.exit(chunk["error"])
"""


def packing_time(b: Bench, context: Path, out: Path) -> tuple[float, int, int, str]:
    """shipit's own context packing, in-process: (median seconds of 3, files, tar bytes, the
    Dockerfile's name in the tar); the tar is written to ``out``."""
    run = timed(
        [PYTHON, "-c", PACK_SNIPPET, str(context), str(out)], env=b.env(), cwd=context.parent
    )
    seconds, files, size, dockerfile = run.output.split()[-4:]
    return float(seconds), int(files), int(size), dockerfile


def context_build(b: Bench) -> list[CaseResult]:
    excluded, included = (2_000, 100) if b.quick else (20_000, 1_000)
    root = b.workdir("context")
    make_context(root, excluded, included)
    env = b.env()
    docker_env = b.env(DOCKER_BUILDKIT="0")
    a_cmd = b.shipit("build", "app", "--name", CTX_NAME)
    b_cmd = ["docker", "build", "-t", f"{CTX_DOCKER}:latest", "app"]
    c_base = ["docker", "build", "-t", f"{CTX_DOCKER}:labels"]
    try:

        def run(
            command: Callable[[], list[str]], run_env: dict[str, str], tag: str
        ) -> Callable[[], float]:
            def once() -> float:
                seconds = timed(command(), env=run_env, cwd=root).seconds
                b.remember(tag)  # the tag moves every run: remember each image it named
                return seconds

            return once

        # The labelled side sends exactly the labels shipit's build carries (read off a first,
        # untimed shipit build): docker build doing what shipit asks of the engine.
        timed(a_cmd, env=env, cwd=root)
        b.remember(f"{CTX_NAME}:latest")
        shipit_labels = {
            key: value
            for key, value in (
                b.client.api.inspect_image(f"{CTX_NAME}:latest")["Config"]["Labels"] or {}
            ).items()
        }
        tar_path = b.tmp / "context.tar"
        pack_s, pack_files, pack_bytes, tar_dockerfile = packing_time(b, root / "app", tar_path)
        floor_cmd = [
            PYTHON,
            "-c",
            FLOOR_BUILD,
            str(tar_path),
            tar_dockerfile,
            f"{CTX_DOCKER}:floor",
            json.dumps(shipit_labels),
        ]
        samples = b.measure(
            {
                "shipit": run(lambda: a_cmd, env, f"{CTX_NAME}:latest"),
                "docker-py": run(lambda: floor_cmd, env, f"{CTX_DOCKER}:floor"),
                "docker": run(lambda: b_cmd, docker_env, f"{CTX_DOCKER}:latest"),
                "docker+labels": run(
                    lambda: [*c_base, *_label_args(shipit_labels), "app"],
                    docker_env,
                    f"{CTX_DOCKER}:labels",
                ),
            },
            runs=b.cheap_runs,
            warmup=True,
        )
        sizes = (b.image_size(f"{CTX_NAME}:latest"), b.image_size(f"{CTX_DOCKER}:latest"))
        labelled = Side(
            "docker build + shipit's labels",
            "DOCKER_BUILDKIT=0 " + show([*c_base, "--label", f"...(x{len(shipit_labels)})", "app"]),
            samples["docker+labels"],
        )
        result = comparison(
            "2",
            f"Large build context ({excluded + included:,} files, {excluded:,} ignored)",
            Side("shipit build", show(a_cmd), samples["shipit"]),
            Side(
                "docker build (legacy builder)",
                "DOCKER_BUILDKIT=0 " + show(b_cmd),
                samples["docker"],
            ),
            Target("<=", 1.0),
            notes=[
                f"Context: {excluded:,} files under node_modules/ (excluded by .dockerignore) and "
                f"{included:,} under src/; `FROM scratch` + `COPY . /app`. Both sides build the "
                "same directory and send the same tar (same entries, order, modes, mtimes and "
                "owners, no PAX records; recorded through a socket proxy, only the unused "
                "devmajor/devminor fields are spelled differently), so after the untimed "
                "warm-up the COPY step is a cache hit on both sides. The upload takes as long "
                "from either client: the engine reads the body only as fast as it unpacks the "
                "entries into its build directory. What differs is starting the client, "
                "packing, and the LABEL steps shipit adds: the legacy builder appends one LABEL "
                "step per label, sorted by key. shipit's `created` label comes from the sources "
                "(SOURCE_DATE_EPOCH, the HEAD commit, or outside git as here the newest file "
                "sent), so on an unchanged context those steps are cache hits too.",
                f"A third side, docker build with exactly the labels shipit's image carries "
                f"(`{labelled.command}`), took a median {labelled.median:.3f} s: shipit is "
                f"{median(samples['shipit']) / labelled.median:.2f}x that.",
                f"Floor of a Python client, measured alternately with the sides: an interpreter "
                f"that imports docker-py and sends shipit's tar, packed beforehand, with the "
                f"same labels through `APIClient.build` (no CLI, no packing, no output) took a "
                f"median {median(samples['docker-py']):.3f} s = "
                f"{median(samples['docker-py']) / median(samples['docker']):.2f}x docker "
                f"build and {median(samples['docker-py']) / labelled.median:.2f}x docker build "
                "with the same labels.",
                f"Resulting image sizes: shipit {sizes[0]:,} bytes, docker {sizes[1]:,} bytes "
                "(equal sizes: both sent the same files).",
                f"shipit's own packing of this context (`create_context_archive`, in-process, "
                f"median of 3): {pack_s * 1000:.0f} ms for {pack_files:,} files, a "
                f"{pack_bytes / 1e6:.2f} MB tar - the ignored files are never walked.",
            ],
        )
        if result.missed:
            out = b.tmp / "context.prof"
            run_ = timed(proc.cprofile_command(a_cmd[1:], out), env=env, cwd=root)
            b.remember(f"{CTX_NAME}:latest")
            result.profile = (
                proc.format_cprofile(out) + f"\n(wall {run_.seconds:.3f} s under cProfile)"
            )
            connect, _ = proc.cprofile_lookup(out, r"engine\.py:\d+\(connect\)")
            sendall, _ = proc.cprofile_lookup(out, r"'sendall' of '_socket\.socket'")
            shipit_median = median(samples["shipit"])
            docker_median = median(samples["docker"])
            labels_cost = labelled.median - docker_median
            client_cost = shipit_median - labelled.median
            result.next_step = (
                f"shipit's median {shipit_median:.2f} s vs docker's {docker_median:.2f} s: the "
                f"LABEL steps shipit adds cost the engine {labels_cost:+.2f} s (docker build "
                "with the same labels vs without), and the remaining "
                f"{client_cost:+.2f} s is the client: a Python interpreter with typer, shipit "
                f"and docker-py ({connect:.2f} s of docker-py import and connect under "
                "cProfile) against the Go CLI. The "
                f"{sendall:.2f} s the profile shows in socket.sendall is the engine unpacking "
                "the context while it reads it, which the docker CLI waits for as long; packing "
                f"is only {pack_s * 1000:.0f} ms, so neither the upload nor the .dockerignore "
                "handling is the gap. What remains is the interpreter's start and docker-py's "
                "import (requests and urllib3), which the Go CLI does not pay: the bare "
                "docker-py client above, which does nothing but that and the same build, is "
                f"already {median(samples['docker-py']) / docker_median:.2f}x docker build."
            )
        return [result]
    finally:
        proc.remove_references(
            b.client,
            [
                f"{CTX_NAME}:latest",
                f"{CTX_DOCKER}:latest",
                f"{CTX_DOCKER}:labels",
                f"{CTX_DOCKER}:floor",
            ],
        )


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_health(port: int, deadline: float) -> bool:
    url = f"http://127.0.0.1:{port}/health"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(urllib.error.URLError, OSError, ConnectionError),
            opener.open(url, timeout=1) as response,
        ):
            if response.status == 200:
                return True
        time.sleep(0.02)
    return False


def _smoke_until_200(
    b: Bench, command: list[str], env: dict[str, str], cwd: Path
) -> tuple[float, proc.Run]:
    """Run ``shipit smoke``; meanwhile find its container and poll /health from outside.
    Returns (seconds from the process start to the first 200, the whole run)."""
    image_id = b.client.images.get(f"{SAMPLE}:latest").id
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    start = time.perf_counter()
    child = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    first_200: float | None = None
    url: str | None = None
    deadline = time.monotonic() + 120
    try:
        while first_200 is None and child.poll() is None and time.monotonic() < deadline:
            if url is None:
                found = b.client.api.containers(
                    filters={"name": "shipit-smoke-", "ancestor": image_id}
                )
                for container in found:
                    for port in container.get("Ports") or []:
                        if port.get("PrivatePort") == 5000 and port.get("PublicPort"):
                            url = f"http://127.0.0.1:{port['PublicPort']}/health"
            else:
                with (
                    contextlib.suppress(urllib.error.URLError, OSError, ConnectionError),
                    opener.open(url, timeout=1) as response,
                ):
                    if response.status == 200:
                        first_200 = time.perf_counter() - start
                        break
            time.sleep(0.02)
        output, _ = child.communicate(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    seconds = time.perf_counter() - start
    text = output.decode(errors="replace")
    if child.returncode != 0:
        raise proc.CommandFailed(command, child.returncode, text)
    if first_200 is None:
        raise RuntimeError(f"never saw /health answer 200 during `{show(command)}`:\n{text[-800:]}")
    return first_200, proc.Run(seconds, 0.0, text, child.returncode)


def smoke_available(b: Bench) -> bool:
    run = timed([SHIPIT, "smoke", "--help"], env=b.env(), cwd=b.tmp, check=False)
    return run.returncode == 0


HTTP_200_RE = re.compile(r"HTTP 200 after ([0-9.]+)\s*s")
HEALTHCHECK_RE = re.compile(r"healthcheck passed after ([0-9.]+)\s*s")


def time_to_healthy(b: Bench) -> list[CaseResult]:
    env = b.env()
    cwd = b.workdir("health")

    def docker_run_and_poll() -> float:
        port = _free_port()
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

    poll_cmd = f"docker run -d -p 127.0.0.1:PORT:5000 {SAMPLE}:latest, then GET /health every 20 ms"
    if not smoke_available(b):
        samples = b.measure({"docker run + poll": docker_run_and_poll})
        side = Side("docker run + poll /health", poll_cmd, samples["docker run + poll"])
        result = measurement(
            "9",
            "Time to healthy (shipit smoke pending)",
            side.median,
            "s",
            Target("<=", 3.0, "s"),
            side=side,
            notes=[
                "`shipit smoke` is not in this build of shipit yet (`shipit smoke --help` "
                "failed), so the harness measured what smoke will do: start the container and "
                "poll /health until HTTP 200. Wall time from `docker run` to the first 200."
            ],
        )
        result.next_step = (
            "re-run when `shipit smoke` lands; this case then times it directly."
            if not result.missed
            else "profile gunicorn's start in the container (worker boot, app import)."
        )
        return [result]

    smoke_cmd = b.shipit("smoke", "--name", SAMPLE, "--verbose")
    totals: list[float] = []
    docker_health: list[float] = []
    own_http: list[float] = []

    def smoke() -> float:
        first_200, run = _smoke_until_200(b, smoke_cmd, env, cwd)
        totals.append(run.seconds)
        match = HEALTHCHECK_RE.search(run.output)
        if match:
            docker_health.append(float(match.group(1)))
        match = HTTP_200_RE.search(run.output)
        if match:
            own_http.append(float(match.group(1)))
        return first_200

    samples = b.measure({"shipit smoke": smoke, "docker run + poll": docker_run_and_poll})
    smoke_side = Side(
        "shipit smoke: start to /health 200",
        show(smoke_cmd) + "  # until its container answers /health with 200",
        samples["shipit smoke"],
    )
    poll_side = Side("docker run + poll /health", poll_cmd, samples["docker run + poll"])
    result = measurement(
        "9",
        "Time to healthy: smoke start to /health 200",
        smoke_side.median,
        "s",
        Target("<=", 3.0, "s"),
        side=smoke_side,
        notes=[
            "Measured from the start of the `shipit smoke --verbose` process to the first HTTP "
            "200 from /health seen by the harness, which finds smoke's container on the engine "
            "(by name and image) and polls its published port every 20 ms while smoke runs. "
            "smoke's own report of the same moment, counted from just before it starts the "
            "container: median "
            + (f"{statistics.median(own_http):.1f} s" if own_http else "n/a")
            + ". For reference, the bare `docker run` + polling /health every 20 ms (side B) "
            f"takes {median(poll_side.samples):.3f} s.",
            f"The whole smoke command takes a median {statistics.median(totals):.2f} s: it also "
            "waits for Docker's own HEALTHCHECK to report healthy (median "
            + (f"{statistics.median(docker_health):.1f} s" if docker_health else "n/a")
            + " after the container starts - the sample Dockerfile's HEALTHCHECK has "
            "`--interval=5s`, so the first probe runs 5 s after start), then removes the "
            "container and network.",
        ],
    )
    result.sides.append(poll_side)
    if result.missed:
        result.next_step = (
            "compare with side B: the difference is smoke's own start (imports, network and "
            "container creation) before its first poll."
        )
    return [result]
