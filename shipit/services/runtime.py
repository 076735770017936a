"""Running built images: the smoke test, `shipit run`, the inspect/compare report and prune.

Every container and network created here carries `io.shipit.managed=true` (and the image
name in `io.shipit.image`), so `shipit prune` can remove exactly what shipit made and nothing
else on the machine. The engine and the reporter come in as arguments; docker stays in engine.py.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import re
import shutil
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipit.adapters.engine.client import Engine
from shipit.errors import ExitCode, ShipitError, UsageError
from shipit.model import (
    ContainerInfo,
    ContainerSpec,
    ContainerSummary,
    ImageInfo,
    ImageSummary,
    NetworkInfo,
)
from shipit.output.reporter import Reporter
from shipit.services.build import CACHE_TAG, MANAGED_LABEL

MANAGED_FLAG = "io.shipit.managed"
MANAGED_SELECTOR = f"{MANAGED_FLAG}=true"
LOOPBACK = "127.0.0.1"
LOG_LINES = 20
# Networks Docker ships with: no name resolution between containers on them (or no ports).
BUILTIN_NETWORKS = frozenset({"bridge", "host", "none"})

Probe = Callable[[str, float], int | None]


class SmokeTestFailed(ShipitError):
    """The image started but did not become healthy in time, or exited, or Docker reports it unhealthy."""

    exit_code = ExitCode.SMOKE


# ---------------------------------------------------------------- shared pieces


def repository_of(reference: str) -> str:
    """'team/app:1.2' -> 'team/app'; 'host:5000/app' -> 'host:5000/app'; digests dropped."""
    reference = reference.split("@", 1)[0]
    repository, _, tag = reference.rpartition(":")
    if not repository or "/" in tag:
        return reference
    return repository


def container_port(image: ImageInfo, port: int | None) -> int:
    """The container port to publish: --port, else the image's single exposed TCP port."""
    if port is not None:
        if not 1 <= port <= 65535:
            raise UsageError(f"--port {port} is not a port number (1-65535)")
        return port
    tcp = [p.split("/", 1)[0] for p in image.exposed_ports if p.endswith("/tcp") or "/" not in p]
    if len(tcp) == 1 and tcp[0].isdigit():
        return int(tcp[0])
    which = ", ".join(image.exposed_ports) if image.exposed_ports else "no port"
    raise UsageError(
        f"image exposes {which}: pass --port to say which container port serves HTTP",
        hint="e.g. --port 5000",
    )


def has_healthcheck(image: ImageInfo) -> bool:
    """Whether the image declares a HEALTHCHECK (not `HEALTHCHECK NONE`)."""
    test = (image.healthcheck or {}).get("Test") or []
    return bool(test) and test[0] != "NONE"


def probe_http(url: str, timeout: float) -> int | None:
    """GET `url` and return the HTTP status, or None when nothing answers (yet)."""
    # No proxies: the URL is on loopback, and an HTTP(S)_PROXY in the environment would
    # otherwise receive the request.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=max(timeout, 0.1)) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        # Not listening yet, reset, or not speaking HTTP (yet).
        return None


def _labels(image_name: str) -> dict[str, str]:
    return {MANAGED_FLAG: "true", MANAGED_LABEL: image_name}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while cleaning up, so a second Ctrl-C cannot leave things behind.

    A signal that arrives meanwhile is delivered (as KeyboardInterrupt) once cleanup is done.
    """
    blocked = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    except (AttributeError, OSError, ValueError):  # no pthread_sigmask on this platform
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _remove_quietly(
    engine: Engine, reporter: Reporter, *, container: str | None, network: str | None
) -> None:
    """Remove a container and a network we created; warn (never raise) when the engine refuses."""
    with _signals_deferred():
        if container:
            try:
                reason = engine.remove_container(container, force=True)
            except ShipitError as exc:
                reason = exc.message
            if reason:
                reporter.warn(f"could not remove container {container}: {reason}")
        if network:
            try:
                reason = engine.remove_network(network)
            except ShipitError as exc:
                reason = exc.message
            if reason:
                reporter.warn(f"could not remove network {network}: {reason}")


def _published_url(info: ContainerInfo | None, port: int, path: str) -> tuple[str, int]:
    binding = info.ports.get(f"{port}/tcp") if info else None
    if binding is None:
        raise ShipitError(f"the engine published no host port for container port {port}")
    host_ip, host_port = binding
    host = LOOPBACK if host_ip in ("", "0.0.0.0") else host_ip
    return f"http://{host}:{host_port}{path}", host_port


# ---------------------------------------------------------------- smoke test


@dataclass(frozen=True)
class SmokeResult:
    """A smoke test that passed; `as_json()` is the --json object."""

    image: str
    url: str
    seconds_to_healthy: float
    http_status: int
    # Docker's verdict when the image has a HEALTHCHECK ("healthy"); None without one.
    health: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "url": self.url,
            "status": "healthy",
            "seconds_to_healthy": round(self.seconds_to_healthy, 3),
            "http_status": self.http_status,
            "health": self.health,
        }


def smoke_test(
    engine: Engine,
    reporter: Reporter,
    image_ref: str,
    *,
    path: str = "/health",
    port: int | None = None,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    probe: Probe | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 0.25,
) -> SmokeResult:
    """Run `image_ref` on a fresh network until GET `path` answers 200 and Docker says healthy.

    The container and the network are removed afterwards in every case (failure, Ctrl-C,
    SIGTERM). Raises SmokeTestFailed (exit 7) with the container's last log lines when the
    app is not healthy within `timeout` seconds, exits, or Docker reports it unhealthy.
    """
    if timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    probe = probe or probe_http
    path = path if path.startswith("/") else f"/{path}"
    image = engine.require_image(image_ref)
    target_port = container_port(image, port)
    healthcheck = has_healthcheck(image)
    name = _unique("shipit-smoke")
    labels = _labels(repository_of(image_ref))
    network: str | None = None
    container: str | None = None
    try:
        reporter.info(f"smoke test of {image_ref} (network and container {name})")
        network = name
        engine.create_network(name, labels=labels)
        container = name
        started = clock()
        try:
            engine.run_container(
                ContainerSpec(
                    image=image.id,
                    name=name,
                    network=name,
                    container_port=target_port,
                    environment=dict(env or {}),
                    labels=labels,
                )
            )
        except ShipitError as exc:
            # A plain ShipitError is the engine refusing to start this image (a bad CMD, ...);
            # a taken name or port, or an unreachable engine, keep their own exit codes.
            if type(exc) is not ShipitError:
                raise
            raise SmokeTestFailed(
                f"smoke test failed: {image_ref} did not start: {exc.message}"
            ) from exc
        info = engine.container(name)
        if info is None or not info.running:
            raise _smoke_failure(engine, name, f"{image_ref} exited as soon as it started")
        url, _ = _published_url(info, target_port, path)
        reporter.info(
            f"waiting up to {timeout:g}s for {url}"
            + (" and Docker's healthcheck" if healthcheck else "")
        )
        result = _wait_healthy(
            engine,
            name,
            image_ref=image_ref,
            url=url,
            healthcheck=healthcheck,
            deadline=started + timeout,
            timeout=timeout,
            probe=probe,
            clock=clock,
            sleep=sleep,
            interval=interval,
        )
        # Milliseconds, once: the message and --json then show the same figure (rounding the
        # raw value to 0.1 s could disagree with rounding its 3-decimal JSON form).
        seconds = round(clock() - started, 3)
        if healthcheck and result[2] is not None:
            reporter.detail(
                f"HTTP 200 after {result[2] - started:.1f}s; Docker's healthcheck passed after "
                f"{seconds:.1f}s"
            )
        reporter.success(f"{image_ref} is healthy after {seconds:.1f}s at {url}")
        return SmokeResult(
            image=image_ref,
            url=url,
            seconds_to_healthy=seconds,
            http_status=result[0],
            health=result[1],
        )
    finally:
        _remove_quietly(engine, reporter, container=container, network=network)


def _wait_healthy(
    engine: Engine,
    container: str,
    *,
    image_ref: str,
    url: str,
    healthcheck: bool,
    deadline: float,
    timeout: float,
    probe: Probe,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    interval: float,
) -> tuple[int, str | None, float | None]:
    """Poll the container and its URL until both are healthy, or raise SmokeTestFailed.

    Returns (http status, Docker's health, clock time of the first HTTP 200).
    """
    status: int | None = None
    first_ok: float | None = None
    while True:
        info = engine.container(container)
        if info is None or not info.running:
            code = info.exit_code if info else None
            raise _smoke_failure(
                engine,
                container,
                f"{image_ref} exited"
                + (f" with code {code}" if code is not None else "")
                + " before it became healthy",
            )
        health = info.health if healthcheck else None
        if health == "unhealthy":
            raise _smoke_failure(
                engine,
                container,
                f"Docker reports {image_ref} unhealthy",
                probe_output=info.health_output,
            )
        remaining = deadline - clock()
        status = probe(url, min(2.0, max(remaining, 0.1)))
        if status == 200 and first_ok is None:
            first_ok = clock()
        if status == 200 and (not healthcheck or health == "healthy"):
            return status, health, first_ok
        if clock() >= deadline:
            waited = (
                f"GET {url} answered {status}" if status is not None else f"nothing answered {url}"
            )
            if status == 200 and healthcheck:
                waited = f"Docker's healthcheck still says '{health}'"
            raise _smoke_failure(
                engine,
                container,
                f"{image_ref} was not healthy within {timeout:g}s: {waited}",
                probe_output=info.health_output if healthcheck else "",
            )
        sleep(min(interval, max(deadline - clock(), 0.0)))


def _smoke_failure(
    engine: Engine, container: str, message: str, *, probe_output: str = ""
) -> SmokeTestFailed:
    logs = engine.container_logs(container, tail=LOG_LINES)
    details = [f"[log] {line}" for line in logs] or ["(the container wrote no log lines)"]
    if probe_output:
        details.append(f"[last health probe] {probe_output.splitlines()[-1][:300]}")
    return SmokeTestFailed(
        f"smoke test failed: {message}",
        hint="its last log lines are shown above" if logs else None,
        details=details,
    )


# ---------------------------------------------------------------- shipit run


@dataclass(frozen=True)
class RunOptions:
    """What `shipit run` starts."""

    image: str
    network: str
    container_name: str | None = None
    port: int | None = None
    publish: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """A started container; `as_json()` is the --json object."""

    container_id: str
    container_name: str
    image: str
    network: str
    network_created: bool
    container_port: int
    host_port: int
    url: str

    def as_json(self) -> dict[str, Any]:
        return {
            "container_id": self.container_id,
            "container_name": self.container_name,
            "image": self.image,
            "network": self.network,
            "network_created": self.network_created,
            "container_port": self.container_port,
            "host_port": self.host_port,
            "url": self.url,
        }


def ensure_network(engine: Engine, name: str, *, labels: Mapping[str, str]) -> bool:
    """Reuse the user-defined bridge network `name`, or create it; True when created."""
    if name in BUILTIN_NETWORKS:
        raise UsageError(
            f"--network {name} is one of Docker's own networks: containers on it cannot "
            "reach each other by name",
            hint="name a user-defined network, e.g. --network app-net",
        )
    existing = engine.network(name)
    if existing is None:
        engine.create_network(name, labels=labels)
        return True
    if existing.driver != "bridge":
        raise UsageError(f"network '{name}' uses the {existing.driver} driver, not bridge")
    return False


def start_container(engine: Engine, reporter: Reporter, options: RunOptions) -> RunResult:
    """`docker network create` (if missing) + `docker run -d -p 127.0.0.1:HOST:PORT --network`."""
    image = engine.require_image(options.image)
    target_port = container_port(image, options.port)
    image_name = repository_of(options.image)
    name = options.container_name or _unique(image_name.rsplit("/", 1)[-1])
    labels = _labels(image_name)
    created = ensure_network(engine, options.network, labels=labels)
    try:
        container_id = engine.run_container(
            ContainerSpec(
                # The reference, not the id, so `docker ps` shows what the user asked for.
                image=options.image,
                name=name,
                network=options.network,
                container_port=target_port,
                host_port=options.publish,
                environment=dict(options.env),
                labels=labels,
            )
        )
        info = engine.container(container_id)
        if info is None or not info.running:
            details = [f"[log] {line}" for line in engine.container_logs(container_id)]
            _remove_quietly(engine, reporter, container=container_id, network=None)
            code = info.exit_code if info else None
            raise ShipitError(
                f"container {name} exited as soon as it started (exit code {code})",
                hint="its last log lines are shown above",
                details=details,
            )
        url, host_port = _published_url(info, target_port, "/")
    except BaseException:
        if created:
            _remove_quietly(engine, reporter, container=None, network=options.network)
        raise
    reporter.info(
        f"started {name} ({container_id[:12]}) from {options.image} on network "
        f"{options.network}{' (created)' if created else ''}: {url}"
    )
    return RunResult(
        container_id=container_id,
        container_name=name,
        image=options.image,
        network=options.network,
        network_created=created,
        container_port=target_port,
        host_port=host_port,
        url=url,
    )


def follow_container(
    engine: Engine, reporter: Reporter, run: RunResult, show: Callable[[str], None]
) -> int | None:
    """Show the container's logs until it stops or Ctrl-C, then remove it (and a network
    this run created, when nothing else uses it). Returns the exit code if it stopped itself.
    """
    exit_code: int | None = None
    try:
        for line in engine.follow_logs(run.container_id):
            show(line)
        info = engine.container(run.container_id)
        exit_code = info.exit_code if info else None
    except KeyboardInterrupt:
        reporter.info(f"stopping {run.container_name}")
    finally:
        network = run.network if run.network_created else None
        if network:
            attached = engine.network(network)
            if attached and set(attached.containers) - {run.container_id}:
                network = None
        _remove_quietly(engine, reporter, container=run.container_id, network=network)
    reporter.info(f"removed {run.container_name}")
    return exit_code


# ---------------------------------------------------------------- inspect and compare


@dataclass(frozen=True)
class Layer:
    """One history entry: the instruction that made it and the bytes it added."""

    size: int
    instruction: str


@dataclass(frozen=True)
class ImageReport:
    """What `shipit inspect` shows about one image; `as_json()` is its JSON form."""

    reference: str
    id: str
    size: int
    created: str
    user: str
    exposed_ports: tuple[str, ...]
    healthcheck: str | None
    labels: Mapping[str, str]
    # In build order: the base image's layers first, the last instruction last.
    layers: tuple[Layer, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "image": self.reference,
            "id": self.id,
            "size_bytes": self.size,
            "size_mb": round(self.size / 1e6, 1),
            "created": self.created,
            "user": self.user or None,
            "exposed_ports": list(self.exposed_ports),
            "healthcheck": self.healthcheck,
            "labels": dict(self.labels),
            "layers": [{"size_bytes": x.size, "instruction": x.instruction} for x in self.layers],
        }


@dataclass(frozen=True)
class Comparison:
    """Two images side by side; the difference is `image` minus `other`."""

    image: ImageReport
    other: ImageReport

    @property
    def difference_bytes(self) -> int:
        return self.image.size - self.other.size

    @property
    def difference_mb(self) -> float:
        return round(self.difference_bytes / 1e6, 2)

    @property
    def percent(self) -> float | None:
        """How much bigger (+) or smaller (-) `image` is than `other`, in percent."""
        if not self.other.size:
            return None
        return round(100.0 * self.difference_bytes / self.other.size, 2)

    def summary(self) -> str:
        a, b = self.image, self.other
        if self.difference_bytes == 0:
            return f"{a.reference} and {b.reference} are the same size ({_mb(a.size)})"
        word = "smaller" if self.difference_bytes < 0 else "larger"
        pct = f", {abs(self.percent):.1f}% {word}" if self.percent is not None else ""
        return (
            f"{a.reference} is {abs(self.difference_mb):.2f} MB {word} than {b.reference} "
            f"({_mb(a.size)} vs {_mb(b.size)}{pct})"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "image": self.image.as_json(),
            "compare": self.other.as_json(),
            "difference_bytes": self.difference_bytes,
            "difference_mb": self.difference_mb,
            "difference_percent": self.percent,
        }


_NOP = re.compile(r"^/bin/sh -c #\(nop\)\s*")
_SHELL = re.compile(r"^(?:\|\d+ .*?)?/bin/sh -c ")


def clean_instruction(created_by: str) -> str:
    """`docker history`'s CreatedBy as the Dockerfile instruction ('/bin/sh -c #(nop) ' dropped)."""
    text = (created_by or "").strip()
    text = text.removesuffix("# buildkit").strip()
    if not text:
        # Layers of an imported base image (`docker import`, some registries) carry no history.
        return "(no history: base image layer)"
    if _NOP.match(text):
        return _NOP.sub("", text)
    if _SHELL.match(text):
        # A RUN step; the legacy builder prefixes '|N KEY=VALUE...' when build args were set.
        return "RUN " + _SHELL.sub("", text, count=1)
    return text


def format_healthcheck(healthcheck: Mapping[str, Any] | None) -> str | None:
    """'CMD curl -f http://... (every 5s, timeout 3s, 3 retries)'; 'disabled'; None if unset."""
    test = list((healthcheck or {}).get("Test") or [])
    if not test:
        return None
    if test[0] == "NONE":
        return "disabled"
    kind, args = test[0], test[1:]
    # As a Dockerfile would say it: exec form for CMD, shell form for CMD-SHELL.
    command = f"CMD {json.dumps(args)}" if kind == "CMD" else f"CMD {args[0] if args else ''}"
    parts = []
    for key, word in (("Interval", "every"), ("Timeout", "timeout"), ("StartPeriod", "start")):
        nanos = (healthcheck or {}).get(key)
        if nanos:
            parts.append(f"{word} {nanos / 1e9:g}s")
    retries = (healthcheck or {}).get("Retries")
    if retries:
        parts.append(f"{retries} retries")
    suffix = f" ({', '.join(parts)})" if parts else ""
    return f"{command}{suffix}"


def inspect_image(engine: Engine, reference: str) -> ImageReport:
    """Size, layers (with the instruction behind each), user, ports, healthcheck and labels."""
    info = engine.require_image(reference)
    history = engine.history(info.id)
    layers = tuple(
        Layer(
            size=int(entry.get("Size") or 0),
            instruction=clean_instruction(entry.get("CreatedBy") or ""),
        )
        for entry in reversed(history)
    )
    return ImageReport(
        reference=reference,
        id=info.id,
        size=info.size,
        created=str(info.raw.get("Created") or ""),
        user=info.user,
        exposed_ports=info.exposed_ports,
        healthcheck=format_healthcheck(info.healthcheck),
        labels=dict(info.labels),
        layers=layers,
    )


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _human(size: int) -> str:
    if size >= 1e6:
        return f"{size / 1e6:.1f} MB"
    if size >= 1e3:
        return f"{size / 1e3:.1f} kB"
    return f"{size} B"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _summary_rows(report: ImageReport) -> list[tuple[str, str]]:
    labels = [f"{k}={v}" for k, v in sorted(report.labels.items())]
    return [
        ("image", report.reference),
        ("id", report.id[:19]),
        ("size", _mb(report.size)),
        (
            "layers",
            f"{sum(1 for x in report.layers if x.size)} with content, {len(report.layers)} in all",
        ),
        ("user", report.user or "root (no USER)"),
        ("exposed", ", ".join(report.exposed_ports) or "-"),
        ("healthcheck", report.healthcheck or "none"),
        ("labels", "\n".join(labels) or "-"),
    ]


def format_report(report: ImageReport, *, width: int = 100) -> list[str]:
    """The plain-text report of one image (for pipes and CI logs)."""
    lines: list[str] = []
    for key, value in _summary_rows(report):
        for i, part in enumerate(value.split("\n")):
            lines.append(f"{key if i == 0 else '':<12} {part}")
    lines.append("")
    lines.append(f"{'SIZE':>9}  INSTRUCTION")
    for layer in report.layers:
        lines.append(f"{_human(layer.size):>9}  {_short(layer.instruction, width)}")
    return lines


def format_comparison(comparison: Comparison, *, width: int = 100) -> list[str]:
    """Plain text: the two summaries side by side, the difference, then each image's layers."""
    a, b = comparison.image, comparison.other
    rows_a, rows_b = _summary_rows(a), _summary_rows(b)
    col = max(20, min(48, max(len(v) for _, value in rows_a for v in value.split("\n"))))
    lines: list[str] = []
    for (key, left), (_, right) in zip(rows_a, rows_b, strict=True):
        lefts, rights = left.split("\n"), right.split("\n")
        for i in range(max(len(lefts), len(rights))):
            la = _short(lefts[i], col) if i < len(lefts) else ""
            rb = rights[i] if i < len(rights) else ""
            lines.append(f"{key if i == 0 else '':<12} {la:<{col}}  {rb}")
    lines.append("")
    lines.append(comparison.summary())
    for report in (a, b):
        lines.append("")
        lines.append(f"layers of {report.reference}:")
        lines.append(f"{'SIZE':>9}  INSTRUCTION")
        for layer in report.layers:
            lines.append(f"{_human(layer.size):>9}  {_short(layer.instruction, width)}")
    return lines


def render_tables(reports: Sequence[ImageReport], comparison: Comparison | None, width: int) -> str:
    """The same report as rich tables, rendered to text with terminal colours."""
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=width, highlight=False)
    summary = Table(show_header=len(reports) > 1, box=None, padding=(0, 2))
    summary.add_column("", style="bold")
    for report in reports:
        summary.add_column(report.reference if len(reports) > 1 else "", overflow="fold")
    rows = [_summary_rows(r) for r in reports]
    for i, (key, _) in enumerate(rows[0]):
        summary.add_row(key, *(r[i][1] for r in rows))
    console.print(summary)
    if comparison is not None:
        style = "green" if comparison.difference_bytes <= 0 else "yellow"
        console.print(f"[{style}]{comparison.summary()}[/{style}]")
    for report in reports:
        table = Table(title=f"layers of {report.reference}", title_justify="left")
        table.add_column("size", justify="right", no_wrap=True, min_width=8)
        table.add_column("instruction", overflow="ellipsis", no_wrap=True, max_width=width - 17)
        for layer in report.layers:
            table.add_row(
                _human(layer.size), layer.instruction, style=None if layer.size else "dim"
            )
        console.print(table)
    return buffer.getvalue().rstrip("\n")


def show_reports(
    reporter: Reporter, reports: Sequence[ImageReport], comparison: Comparison | None
) -> None:
    """Print the report on stdout: rich tables on a terminal, plain text otherwise."""
    width = shutil.get_terminal_size((120, 24)).columns
    tty = bool(getattr(reporter.out, "isatty", lambda: False)())
    if reporter.mode.live and tty:
        reporter.emit(render_tables(reports, comparison, width))
        return
    plain_width = 1000 if reporter.mode.verbose else 100
    lines = (
        format_comparison(comparison, width=plain_width)
        if comparison is not None
        else format_report(reports[0], width=plain_width)
    )
    for line in lines:
        reporter.emit(line.rstrip())


# ---------------------------------------------------------------- prune


@dataclass(frozen=True)
class PrunePlan:
    """What `shipit prune` would remove (and keep), decided from labels alone."""

    name: str
    keep: int
    containers: tuple[ContainerSummary, ...]
    networks: tuple[NetworkInfo, ...]
    # Builds beyond the newest `keep`: every tag of each is removed (the image goes with its last tag).
    old_builds: tuple[ImageSummary, ...]
    dangling: tuple[ImageSummary, ...]
    kept_builds: tuple[ImageSummary, ...]
    # Things shipit made that stay, and why (a running container, a network still in use).
    left: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.containers or self.networks or self.old_builds or self.dangling)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "keep": self.keep,
            "containers": [
                {"id": c.id, "name": c.name, "image": c.image, "state": c.state}
                for c in self.containers
            ],
            "networks": [{"id": n.id, "name": n.name} for n in self.networks],
            "images": [_image_json(i) for i in self.old_builds],
            "dangling": [_image_json(i) for i in self.dangling],
            "kept": [_image_json(i) for i in self.kept_builds],
            "left": [{"what": w, "reason": r} for w, r in self.left],
        }


@dataclass(frozen=True)
class PruneOutcome:
    """What `--yes` removed, and what the engine refused (e.g. an image a container uses)."""

    removed: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "removed": list(self.removed),
            "skipped": [{"what": w, "reason": r} for w, r in self.skipped],
        }


def _image_json(image: ImageSummary) -> dict[str, Any]:
    return {
        "id": image.id,
        "tags": list(image.repo_tags),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(image.created)),
        "size_bytes": image.size,
    }


def _is_cache_image(image: ImageSummary, name: str) -> bool:
    """The builder-stage cache (NAME:buildcache) is not a build: it stays while tagged."""
    return bool(image.repo_tags) and all(t == f"{name}:{CACHE_TAG}" for t in image.repo_tags)


def plan_prune(engine: Engine, *, name: str, keep: int, include_running: bool = False) -> PrunePlan:
    """Decide what to remove: only containers/networks labelled io.shipit.managed=true and
    images labelled io.shipit.image=NAME. Nothing else on the machine is even looked at.
    """
    if keep < 0:
        raise UsageError("--keep must be 0 or more")
    left: list[tuple[str, str]] = []

    containers: list[ContainerSummary] = []
    for c in engine.containers(label=MANAGED_SELECTOR):
        if c.labels.get(MANAGED_FLAG) != "true":
            continue
        if c.state in ("running", "restarting", "paused") and not include_running:
            left.append((f"container {c.name}", f"{c.state} (pass --all to remove it)"))
            continue
        containers.append(c)
    going = {c.id for c in containers}

    networks: list[NetworkInfo] = []
    for n in engine.networks(label=MANAGED_SELECTOR):
        if n.labels.get(MANAGED_FLAG) != "true" or n.name in BUILTIN_NETWORKS:
            continue
        users = set(n.containers) - going
        if users:
            left.append((f"network {n.name}", f"in use by {len(users)} container(s)"))
            continue
        networks.append(n)

    selector = f"{MANAGED_LABEL}={name}"
    ours = [i for i in engine.images(label=selector) if i.labels.get(MANAGED_LABEL) == name]
    builds = [i for i in ours if i.repo_tags and not _is_cache_image(i, name)]
    builds.sort(key=lambda i: (i.created, i.id), reverse=True)
    kept, old = builds[:keep], builds[keep:]
    dangling = [i for i in ours if not i.repo_tags]
    return PrunePlan(
        name=name,
        keep=keep,
        containers=tuple(containers),
        networks=tuple(networks),
        old_builds=tuple(old),
        dangling=tuple(sorted(dangling, key=lambda i: (i.created, i.id))),
        kept_builds=tuple(kept),
        left=tuple(left),
    )


def describe_plan(plan: PrunePlan) -> list[str]:
    """One line per thing to remove or keep, for the plain-text plan."""
    lines = [
        *(f"container  {c.name} ({c.state}, {c.image})" for c in plan.containers),
        *(f"network    {n.name}" for n in plan.networks),
        *(
            f"image      {', '.join(i.repo_tags)} ({i.id[7:19]}, {_mb(i.size)})"
            for i in plan.old_builds
        ),
        *(f"dangling   {i.id[7:19]} ({_mb(i.size)})" for i in plan.dangling),
    ]
    if not lines:
        lines.append(f"nothing to remove (keeping the newest {plan.keep} builds of {plan.name})")
    return lines


def apply_prune(engine: Engine, reporter: Reporter, plan: PrunePlan) -> PruneOutcome:
    """Remove what the plan lists: containers, then networks, then old tags, then dangling images."""
    removed: list[str] = []
    skipped: list[tuple[str, str]] = []

    def record(what: str, reason: str | None) -> None:
        if reason:
            skipped.append((what, reason))
            reporter.warn(f"kept {what}: {reason}")
        else:
            removed.append(what)
            reporter.info(f"removed {what}")

    for c in plan.containers:
        record(f"container {c.name}", engine.remove_container(c.id, force=c.state != "exited"))
    for n in plan.networks:
        record(f"network {n.name}", engine.remove_network(n.id))
    for image in plan.old_builds:
        for tag in image.repo_tags:
            # The tag may have moved to another image since the plan was made: leave it then.
            current = engine.image(tag)
            if current is None:
                continue
            if current.id != image.id:
                record(f"tag {tag}", f"now points at {current.id[7:19]}, not the planned image")
                continue
            record(f"tag {tag}", engine.remove_image_if_unused(tag))
    for image in plan.dangling:
        record(f"image {image.id[7:19]}", engine.remove_image_if_unused(image.id))
    return PruneOutcome(removed=tuple(removed), skipped=tuple(skipped))
