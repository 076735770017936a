"""Running the timed commands: subprocesses (plain or under a pseudo-terminal), CPU accounting,
profiles (cProfile, ``-X importtime``), and the Docker clean-up helpers."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pstats
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.names import is_own_repository

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SHIPIT = str(VENV_BIN / "shipit")
PYTHON = sys.executable
COMMAND_TIMEOUT = 900.0
#: The Debian 20.10 docker CLI, whose DOCKER_BUILDKIT=1 client is BuildKit with file sync
#: (/usr/local/bin/docker, first on PATH, is a newer client without buildx: legacy builds).
BUILDKIT_CLI = "/usr/bin/docker"

# Variables that change what shipit does (CI detection, defaults, credentials): the benchmark
# runs every command without them, so a developer's shell and CI measure the same thing.
_DROPPED_PREFIXES = ("SHIPIT_", "DOCKERHUB_", "GITHUB_", "CODEBUILD_", "AWS_")
_DROPPED = {"CI", "GITLAB_CI", "GITHUB_ACTIONS", "DOCKER_BUILDKIT", "BUILDKIT_PROGRESS"}


class CommandFailed(RuntimeError):
    """A timed command exited non-zero: a crash-type failure of the benchmark."""

    def __init__(self, command: Sequence[str], returncode: int, output: str):
        self.command = list(command)
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-25:])
        super().__init__(f"`{show(command)}` exited {returncode}:\n{tail}")


def show(command: Sequence[str]) -> str:
    """A command line for the report, with the venv's paths shortened."""
    text = shlex.join(command)
    return text.replace(str(VENV_BIN) + "/", ".venv/bin/").replace(str(REPO) + "/", "")


def base_env(tmp: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every timed command: no CI/shipit/AWS variables, private Docker config."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _DROPPED and not key.startswith(_DROPPED_PREFIXES)
    }
    env["DOCKER_CONFIG"] = str(tmp / "docker-config")
    env["SHIPIT_CACHE_DIR"] = str(tmp / "shipit-cache")
    env.setdefault("TERM", "dumb")
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    if extra:
        env.update(extra)
    return env


@dataclass
class Run:
    """One timed command: wall seconds, the command's own CPU seconds, and what it printed."""

    seconds: float
    cpu_seconds: float
    output: str
    returncode: int


def _rusage_cpu(rusage: Any) -> float:
    return float(rusage.ru_utime + rusage.ru_stime)


def wait(proc: subprocess.Popen[Any], deadline: float) -> tuple[int, float]:
    """Reap ``proc`` with wait4 (its CPU time included), killing it at the deadline."""
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, _rusage_cpu(rusage)
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return -9, _rusage_cpu(rusage)
        time.sleep(0.002)


def timed(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
) -> Run:
    """Run ``command`` once, output captured; wall time from just before start to exit."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = spawn(command, env, cwd, out)
        code, cpu = wait(proc, time.monotonic() + timeout)
        seconds = time.perf_counter() - start
        out.seek(0)
        return finish(command, Run(seconds, cpu, out.read().decode(errors="replace"), code), check)


def spawn(command: Sequence[str], env: Mapping[str, str], cwd: Path, out: Any) -> Any:
    """The child, in its own session, stdout and stderr to ``out``, no stdin."""
    return subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finish(command: Sequence[str], run: Run, check: bool = True) -> Run:
    """``run``, or CommandFailed when it exited non-zero and ``check``."""
    if check and run.returncode != 0:
        raise CommandFailed(command, run.returncode, run.output)
    return run


def _read_all(master: int, proc: subprocess.Popen[Any], deadline: float) -> bytes:
    """What the child writes to the terminal until it closes it or exits."""
    chunks: list[bytes] = []
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.05)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks)


def timed_pty(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
) -> Run:
    """Run ``command`` with stdout and stderr on a 120x40 pseudo-terminal (shipit draws live)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        start = time.perf_counter()
        try:
            proc = spawn(command, env, cwd, slave)
        finally:
            os.close(slave)
        deadline = time.monotonic() + timeout
        output = _read_all(master, proc, deadline)
        code, cpu = wait(proc, deadline)
        seconds = time.perf_counter() - start
    finally:
        os.close(master)
    return finish(command, Run(seconds, cpu, output.decode(errors="replace"), code), check)


# ------------------------------------------------------------------ CPU of other processes


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    # After the ")" of the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / ticks


def dockerd_pid() -> int | None:
    for candidate in ("/var/run/docker.pid", "/run/docker.pid"):
        with contextlib.suppress(OSError, ValueError):
            return int(Path(candidate).read_text().strip())
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        out = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, timeout=5)
        return int(out.stdout.split()[0])
    return None


@contextlib.contextmanager
def cpu_used(pids: Mapping[str, int | None]) -> Iterator[dict[str, float]]:
    """CPU seconds that other processes (dockerd, registries) spend during the block, by name,
    filled in when it ends."""
    before = {name: process_cpu(pid) for name, pid in pids.items() if pid}
    used: dict[str, float] = {}
    try:
        yield used
    finally:
        used.update({name: process_cpu(pids[name] or 0) - cpu for name, cpu in before.items()})


# ------------------------------------------------------------------ profiles


def cprofile_command(args: Sequence[str], out: Path) -> list[str]:
    """``shipit ARGS`` under cProfile (``python -m cProfile -o OUT -m shipit ARGS``)."""
    return [PYTHON, "-m", "cProfile", "-o", str(out), "-m", "shipit", *args]


def _short(path: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


#: shipit's boundary modules, where it waits on the engine, a registry or AWS, or does real work:
#: the flat modules and the packages of the layout they move into.
BOUNDARY = tuple(
    f"shipit/{name}"
    for name in [
        "adapters/",
        "services/",
        "context",
        "output/",
        "engine.py",
        "registry_api.py",
        "ecr.py",
        "reporter.py",
        "dockerconfig.py",
        "runtime.py",
        "gitinfo.py",
        "config.py",
    ]
)


def _profile_rows(path: Path) -> list[tuple[float, float, int, str]]:
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    return [
        (ct, tt, nc, f"{_short(file)}:{line}({func})")
        for (file, line, func), (_cc, nc, tt, ct, _callers) in raw.items()
    ]


def where(module: str, function: str) -> str:
    """A `cprofile_lookup` pattern for ``function`` in a shipit module whose path contains
    ``module`` (a regular expression, e.g. ``engine`` or ``reporter|output``): it matches the
    flat layout (shipit/engine.py) and the package one (shipit/adapters/engine/....py) alike."""
    return rf"shipit/[^:]*(?:{module})[^:]*\.py:\d+\({function}\)"


def cprofile_lookup(path: Path, pattern: str) -> tuple[float, int]:
    """Cumulative seconds and calls of the function whose location matches the regular
    expression ``pattern`` (the largest match, so recursion is not double counted)."""
    regex = re.compile(pattern)
    matches = [(ct, nc) for ct, _tt, nc, name in _profile_rows(path) if regex.search(name)]
    return max(matches, default=(0.0, 0))


def cprofile_breakdown(
    path: Path, calls: Mapping[str, str], *, nested: Mapping[str, str] | None = None
) -> tuple[float, list[tuple[str, float, int]], float]:
    """Total seconds, then (label, seconds, calls) of each of ``calls`` (label -> pattern for
    `cprofile_lookup`) that ran, then the seconds none of them account for. ``nested`` maps a
    label to the label of a call that runs inside it: its time is taken out of the outer one."""
    found = {label: cprofile_lookup(path, pattern) for label, pattern in calls.items()}
    for outer, inner in (nested or {}).items():
        seconds, count = found[outer]
        found[outer] = (max(0.0, seconds - found[inner][0]), count)
    parts = [(label, seconds, count) for label, (seconds, count) in found.items() if count]
    total = max((row[0] for row in _profile_rows(path)), default=0.0)
    return total, parts, total - sum(seconds for _, seconds, _ in parts)


def format_cprofile(path: Path, top: int = 10, focus: Sequence[str] | None = BOUNDARY) -> str:
    """Two top-N tables from a cProfile dump: the functions whose location contains one of
    ``focus`` (every function when None) by cumulative time - for shipit, its boundary modules,
    so the table is a time breakdown rather than the chain of callers - and every function by
    own (self) time."""
    rows = _profile_rows(path)
    total = max((r[0] for r in rows), default=0.0)
    lines = [f"cProfile of the shipit process: {total:.3f} s in all (main thread)."]
    named = f" of {', '.join(focus)}" if focus else ""
    if focus == BOUNDARY:
        named = " of shipit's engine, registry, AWS, context, output and config modules"
    lines.append(f"Top {top} functions{named} by cumulative time:")
    lines.append(f"{'cumul s':>9} {'self s':>8} {'calls':>7}  function")
    chosen = sorted(
        (r for r in rows if focus is None or any(f in r[3] for f in focus)), reverse=True
    )
    for ct, tt, nc, name in chosen[:top]:
        lines.append(f"{ct:9.3f} {tt:8.3f} {nc:7d}  {name}")
    lines.append(f"Top {top} functions by own time:")
    lines.append(f"{'self s':>9} {'cumul s':>8} {'calls':>7}  function")
    for ct, tt, nc, name in sorted(rows, key=lambda r: r[1], reverse=True)[:top]:
        lines.append(f"{tt:9.3f} {ct:8.3f} {nc:7d}  {name}")
    return "\n".join(lines)


_IMPORT_RE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """``-X importtime`` lines as (self us, cumulative us, depth, module)."""
    parsed = []
    for line in stderr.splitlines():
        match = _IMPORT_RE.match(line)
        if match:
            depth = (len(match.group(3)) - 1) // 2
            parsed.append((int(match.group(1)), int(match.group(2)), depth, match.group(4)))
    return parsed


def format_importtime(stderr: str, top: int = 10) -> str:
    """The ``top`` slowest imports by cumulative time, and the total of top-level imports."""
    parsed = parse_importtime(stderr)
    total = sum(cum for _self, cum, depth, _m in parsed if depth == 0)
    lines = [f"python -X importtime: {total / 1000:.1f} ms in top-level imports."]
    lines.append(f"{'cumul ms':>9} {'self ms':>8}  module")
    for self_us, cum_us, depth, module in sorted(parsed, key=lambda r: r[1], reverse=True)[:top]:
        lines.append(f"{cum_us / 1000:9.1f} {self_us / 1000:8.1f}  {'  ' * depth}{module}")
    return "\n".join(lines)


# ------------------------------------------------------------------ Docker clean-up


def docker_client() -> Any:
    import docker

    return docker.from_env(timeout=600)


def remove_references(client: Any, references: Sequence[str]) -> None:
    """``docker rmi`` each reference (a tag; untagged parents go with it); missing ones are fine."""
    import docker.errors

    for reference in references:
        with contextlib.suppress(docker.errors.NotFound):
            client.images.remove(reference, noprune=False)


def bench_references(client: Any, predicate: Any = is_own_repository) -> list[str]:
    """Every local tag whose repository the predicate accepts."""
    references = []
    for image in client.api.images():  # not images.list(): it re-reads every image
        for tag in image.get("RepoTags") or []:
            repository = tag.rpartition(":")[0]
            if predicate(repository):
                references.append(tag)
    return references


_IMAGE_ID_RE = re.compile(r"(?:--->|Successfully built)\s+([0-9a-f]{12})\b")


def build_image_ids(output: str) -> list[str]:
    """The image ids a legacy-builder build printed (`` ---> ID`` per step), in order."""
    return _IMAGE_ID_RE.findall(output)


def remove_if_untagged(client: Any, image_ids: Sequence[str]) -> int:
    """Remove each image that exists and has no tag (never force; an image with children or
    a container is left alone). Leaves first; untagged parents go with them. Returns how many
    were removed."""
    import docker.errors

    removed = 0
    for image_id in reversed(list(dict.fromkeys(image_ids))):
        try:
            attrs = client.api.inspect_image(image_id)
        except docker.errors.NotFound:
            continue
        if [t for t in attrs.get("RepoTags") or [] if t != "<none>:<none>"]:
            continue
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_image(image_id, noprune=False)
            removed += 1
    return removed


def remove_bench_images(client: Any, predicate: Any = is_own_repository) -> list[str]:
    """Remove every tag of the harness's repositories; returns what was removed."""
    references = bench_references(client, predicate)
    remove_references(client, references)
    return references
