"""The engine's runtime requests: the networks and containers smoke, run and prune use."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from shipit.adapters.engine.calls import EngineBase, _api_message
from shipit.errors import EngineUnavailableError
from shipit.model import (
    ContainerInfo,
    ContainerSpec,
    ContainerSummary,
    NetworkInfo,
)


class RuntimeCalls(EngineBase):
    """The networks and containers shipit starts, follows and removes."""

    def create_network(self, name: str, *, labels: Mapping[str, str]) -> str:
        """Create a user-defined bridge network (containers on it reach each other by name)."""
        data = self._runtime_call(
            f"create network '{name}'",
            self.api.create_network,
            name,
            driver="bridge",
            labels=dict(labels),
            check_duplicate=True,
        )
        return str(data["Id"])

    def network(self, ref: str) -> NetworkInfo | None:
        """Inspect a network by name or id; None when it does not exist."""
        import docker.errors

        try:
            data = self._call(self.api.inspect_network, ref)
        except docker.errors.NotFound:
            return None
        return self._network_info(data)

    def networks(self, *, label: str) -> list[NetworkInfo]:
        """Networks carrying `label` ("key=value"), each inspected for its attached containers."""
        found: list[NetworkInfo] = []
        for entry in self._call(self.api.networks, filters={"label": [label]}) or []:
            info = self.network(entry["Id"])
            if info is not None:
                found.append(info)
        return found

    def remove_network(self, ref: str) -> str | None:
        """Remove a network; None when done or already gone, else why the engine refused."""
        import docker.errors

        try:
            self._call(self.api.remove_network, ref)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            return _api_message(exc)
        return None

    def run_container(self, spec: ContainerSpec) -> str:
        """Create and start a detached container (`docker run -d -p IP:HOST:PORT --network`)."""
        port = f"{spec.container_port}/tcp"
        host_config = self.api.create_host_config(
            port_bindings={port: (spec.host_ip, spec.host_port)},
            network_mode=spec.network,
        )
        data = self._runtime_call(
            f"create container '{spec.name}'",
            self.api.create_container,
            spec.image,
            name=spec.name,
            detach=True,
            ports=[(spec.container_port, "tcp")],
            environment=dict(spec.environment),
            labels=dict(spec.labels),
            host_config=host_config,
        )
        container_id = str(data["Id"])
        try:
            self._runtime_call(f"start container '{spec.name}'", self.api.start, container_id)
        except BaseException:
            # Either a running container or none: a created-but-not-started one is removed.
            with contextlib.suppress(Exception):
                self._call(self.api.remove_container, container_id, force=True, v=True)
            raise
        return container_id

    def container(self, ref: str) -> ContainerInfo | None:
        """Inspect a container by name or id; None when it does not exist."""
        import docker.errors

        try:
            data = self._call(self.api.inspect_container, ref)
        except docker.errors.NotFound:
            return None
        state = data.get("State") or {}
        health = state.get("Health") or None
        probes = (health or {}).get("Log") or []
        ports: dict[str, tuple[str, int]] = {}
        for port, bindings in ((data.get("NetworkSettings") or {}).get("Ports") or {}).items():
            for binding in bindings or ():
                if str(binding.get("HostPort") or "").isdigit():
                    ports[port] = (str(binding.get("HostIp") or ""), int(binding["HostPort"]))
                    break
        config = data.get("Config") or {}
        return ContainerInfo(
            id=data["Id"],
            name=str(data.get("Name") or "").lstrip("/"),
            image=str(config.get("Image") or data.get("Image") or ""),
            status=str(state.get("Status") or ""),
            running=bool(state.get("Running")),
            exit_code=None if state.get("Running") else state.get("ExitCode"),
            health=health.get("Status") if health else None,
            health_output=str(probes[-1].get("Output") or "").strip() if probes else "",
            labels=dict(config.get("Labels") or {}),
            ports=ports,
        )

    def containers(self, *, label: str) -> list[ContainerSummary]:
        """Containers (running or not) carrying `label` ("key=value")."""
        entries = self._call(self.api.containers, all=True, filters={"label": [label]}) or []
        return [
            ContainerSummary(
                id=entry["Id"],
                name=str((entry.get("Names") or [""])[0]).lstrip("/"),
                image=str(entry.get("Image") or ""),
                state=str(entry.get("State") or ""),
                labels=dict(entry.get("Labels") or {}),
            )
            for entry in entries
        ]

    def container_logs(self, ref: str, *, tail: int = 20) -> list[str]:
        """The last `tail` lines a container wrote (stdout and stderr); [] if it is gone."""
        import docker.errors

        try:
            raw = self._call(self.api.logs, ref, stdout=True, stderr=True, tail=tail)
        except docker.errors.NotFound:
            return []
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return [line.rstrip("\r") for line in text.splitlines()][-tail:]

    def follow_logs(self, ref: str) -> Iterator[str]:
        """Yield a container's log lines as it writes them, until it stops (`docker logs -f`).

        docker-py lifts the read timeout on log streams, so a quiet container does not end it.
        """
        import docker.errors
        import requests.exceptions

        try:
            stream = self._call(self.api.logs, ref, stream=True, follow=True)
        except docker.errors.NotFound:
            return
        pending = b""
        try:
            for chunk in stream:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace").rstrip("\r")
        except requests.exceptions.ConnectionError as exc:
            raise EngineUnavailableError(
                f"lost the connection to the Docker engine at {self.host} while following logs"
            ) from exc
        if pending:
            yield pending.decode("utf-8", "replace").rstrip("\r")

    def remove_container(self, ref: str, *, force: bool = False) -> str | None:
        """Remove a container (force: kill it first); None when done or already gone."""
        import docker.errors

        try:
            self._call(self.api.remove_container, ref, force=force, v=True)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            if "already in progress" in _api_message(exc):
                return None
            return _api_message(exc)
        return None
