"""`shipit run`: start the image on loopback, labelled as shipit's, and follow its logs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipit.adapters.engine.client import Engine
from shipit.errors import ShipitError
from shipit.model import (
    ContainerSpec,
)
from shipit.output.reporter import Reporter
from shipit.services.containers import (
    _labels,
    _published_url,
    _remove_quietly,
    _unique,
    container_port,
    ensure_network,
    repository_of,
)


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
