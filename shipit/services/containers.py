"""What the runtime services share: shipit's labels on what it creates, names, ports, cleanup.

Every container and network shipit creates carries `io.shipit.managed=true` (and the image
name in `io.shipit.image`), so `shipit prune` removes exactly what shipit made and nothing else.
"""

from __future__ import annotations

import contextlib
import signal
import uuid
from collections.abc import Iterator, Mapping

from shipit.adapters.engine.client import Engine
from shipit.errors import ShipitError, UsageError
from shipit.model import (
    ContainerInfo,
    ImageInfo,
)
from shipit.output.reporter import Reporter
from shipit.services.build import MANAGED_LABEL

MANAGED_FLAG = "io.shipit.managed"


MANAGED_SELECTOR = f"{MANAGED_FLAG}=true"


LOOPBACK = "127.0.0.1"


LOG_LINES = 20


# Networks Docker ships with: no name resolution between containers on them (or no ports).
BUILTIN_NETWORKS = frozenset({"bridge", "host", "none"})


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
