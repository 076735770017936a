"""The smoke test: run the image on a fresh network until its HTTP health path answers 200."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shipit.adapters.engine.client import Engine
from shipit.errors import ExitCode, ShipitError, UsageError
from shipit.model import (
    ContainerInfo,
    ContainerSpec,
)
from shipit.output.reporter import Reporter
from shipit.services.containers import (
    LOG_LINES,
    _labels,
    _published_url,
    _remove_quietly,
    _unique,
    container_port,
    has_healthcheck,
    repository_of,
)

Probe = Callable[[str, float], int | None]


class SmokeTestFailed(ShipitError):
    """The image started but did not become healthy in time, or exited, or Docker reports it unhealthy."""

    exit_code = ExitCode.SMOKE
    kind = "smoke"


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
    healthcheck = has_healthcheck(image)
    spec = _smoke_spec(image, image_ref, container_port(image, port), env)
    name = spec.name
    network: str | None = None
    container: str | None = None
    try:
        reporter.info(f"smoke test of {image_ref} (network and container {name})")
        network = name
        engine.create_network(name, labels=spec.labels)
        container = name
        started = clock()
        info = _start(engine, spec, image_ref)
        url, _ = _published_url(info, spec.container_port, path)
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
        return _healthy(reporter, image_ref, url, result, started, clock(), healthcheck)
    finally:
        _remove_quietly(engine, reporter, container=container, network=network)


def _smoke_spec(
    image: Any, image_ref: str, target_port: int, env: Mapping[str, str] | None
) -> ContainerSpec:
    """The smoke container: a fresh name (its network's too), shipit's labels, `env`."""
    name = _unique("shipit-smoke")
    labels = _labels(repository_of(image_ref))
    return ContainerSpec(
        image=image.id,
        name=name,
        network=name,
        container_port=target_port,
        environment=dict(env or {}),
        labels=labels,
    )


def _healthy(
    reporter: Reporter,
    image_ref: str,
    url: str,
    result: tuple[int, str | None, float | None],
    started: float,
    now: float,
    healthcheck: bool,
) -> SmokeResult:
    """The result of a passed smoke test, and its detail lines (the command prints it once,
    after cleanup: the URL is gone by then)."""
    # Milliseconds, once: the message and --json then show the same figure (rounding the
    # raw value to 0.1 s could disagree with rounding its 3-decimal JSON form).
    seconds = round(now - started, 3)
    http_status, health, http_ok_at = result
    if healthcheck and http_ok_at is not None:
        reporter.detail(
            f"HTTP 200 after {http_ok_at - started:.1f}s; Docker's healthcheck passed after "
            f"{seconds:.1f}s"
        )
    reporter.detail(f"{image_ref} is healthy after {seconds:.1f}s at {url}")
    return SmokeResult(
        image=image_ref, url=url, seconds_to_healthy=seconds, http_status=http_status, health=health
    )


def _start(engine: Engine, spec: ContainerSpec, image_ref: str) -> ContainerInfo:
    """Start the smoke container; one that cannot start or exits at once fails the test."""
    try:
        engine.run_container(spec)
    except ShipitError as exc:
        # A plain ShipitError is the engine refusing to start this image (a bad CMD, ...);
        # a taken name or port, or an unreachable engine, keep their own exit codes.
        if type(exc) is not ShipitError:
            raise
        raise SmokeTestFailed(
            f"smoke test failed: {image_ref} did not start: {exc.message}"
        ) from exc
    info = engine.container(spec.name)
    if info is None or not info.running:
        raise _smoke_failure(engine, spec.name, f"{image_ref} exited as soon as it started")
    return info


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
