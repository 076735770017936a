"""The docker-py client: the one module that talks to the Docker engine through docker-py.

It turns docker-py's streams into typed events and results and its exceptions into shipit
errors. A build or push stream can carry an ``error`` chunk without docker-py raising, so every
stream is read to its end here and such chunks become exceptions.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from shipit.adapters.classify import classify_registry_message
from shipit.adapters.engine.request_limits import check_build_query, url_too_long
from shipit.errors import (
    BuildError,
    DockerfileError,
    EngineUnavailableError,
    ImageNotFoundError,
    RegistryError,
    ShipitError,
    UsageError,
)
from shipit.model import (
    Auth,
    BuildOutput,
    BuildStep,
    ContainerInfo,
    ContainerSpec,
    ContainerSummary,
    Event,
    EventSink,
    ImageInfo,
    ImageSummary,
    NetworkInfo,
    PushProgress,
    PushStatus,
)

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def _ignore(_: Event) -> None:
    return None


# How long the first request may take: a healthy engine answers /version in milliseconds.
PROBE_SECONDS = 10.0
# Any version docker-py accepts, so that building the client makes no request (the probe
# replaces it with the engine's own).
_PROBE_API_VERSION = "1.24"


def _probe_api_version(api: Any, host: str, timeout: float) -> str:
    """The engine's API version (`GET /version`), telling a silent engine from a missing one."""
    import requests.exceptions

    api.timeout = timeout
    try:
        version = api.version(api_version=False)
    except requests.exceptions.Timeout as exc:
        raise EngineUnavailableError(
            f"the Docker engine at {host} is not answering: it accepted the connection but "
            f"sent nothing within {timeout:g}s",
            hint=_silent_engine_hint(host),
        ) from exc
    except Exception as exc:  # connection refused, no socket, TLS failure, an HTTP error
        raise EngineUnavailableError(
            f"cannot reach the Docker engine at {host}",
            hint="start Docker (or dockerd), or point DOCKER_HOST at a running engine",
        ) from exc
    answer = version.get("ApiVersion") if isinstance(version, dict) else None
    if not isinstance(answer, str) or not answer:
        raise EngineUnavailableError(
            f"{host} answered, but not like a Docker engine (no API version)",
            hint="check that DOCKER_HOST points at the Docker engine",
        )
    return answer


def _silent_engine_hint(host: str) -> str:
    if host.startswith("unix://"):
        check = f"curl --unix-socket {host[len('unix://') :]} http://localhost/_ping"
    else:
        address = host.split("://", 1)[-1]
        check = f"curl http://{address}/_ping (https with TLS)"
    return (
        f"check it with 'docker version' or '{check}'; if it hangs, the engine is stuck or "
        "overloaded: look at its log (journalctl -u docker) or restart it, or point DOCKER_HOST "
        "at another engine"
    )


# ---------------------------------------------------------------- the engine


class Engine:
    """A connected Docker engine. Build one with `Engine.connect(env)`; tests pass a fake `api`."""

    def __init__(self, api: Any, *, host: str = DEFAULT_SOCKET):
        self.api = api
        self.host = host

    @classmethod
    def connect(
        cls, env: Mapping[str, str], *, timeout: float = 60.0, probe_timeout: float = PROBE_SECONDS
    ) -> Engine:
        """Reach the engine `docker.from_env()` would (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH).

        The first request (the API version) waits at most `probe_timeout`: an engine that
        accepts the connection and never answers is reported as such, not as a missing engine.
        Every later request waits up to `timeout`.
        """
        import docker
        import docker.errors

        host = env.get("DOCKER_HOST") or DEFAULT_SOCKET
        probe = min(timeout, probe_timeout)
        try:
            kwargs = docker.utils.kwargs_from_env(environment=dict(env))
            # A fixed version makes no request; the probe below asks the engine for its own.
            api = docker.APIClient(version=_PROBE_API_VERSION, timeout=int(timeout), **kwargs)
        except docker.errors.TLSParameterError as exc:
            raise EngineUnavailableError(
                f"Docker TLS settings are invalid for {host}: {exc}",
                hint="check DOCKER_CERT_PATH and DOCKER_TLS_VERIFY",
            ) from exc
        except docker.errors.DockerException as exc:
            raise EngineUnavailableError(
                f"cannot reach the Docker engine at {host}",
                hint="start Docker (or dockerd), or point DOCKER_HOST at a running engine",
            ) from exc
        api._version = _probe_api_version(api, host, probe)
        api.timeout = timeout
        return cls(api, host=host)

    def registry_config(self) -> dict[str, Any]:
        """The engine's registry trust (`docker info` RegistryConfig: IndexConfigs, CIDRs)."""
        info = self._call(self.api.info)
        config = info.get("RegistryConfig") if isinstance(info, dict) else None
        return dict(config) if isinstance(config, dict) else {}

    # ------------------------------------------------------------ images

    def image(self, ref: str) -> ImageInfo | None:
        """Inspect a local image by id or reference; None when it does not exist."""
        import docker.errors

        try:
            data = self._call(self.api.inspect_image, ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                return None
            raise
        config = data.get("Config") or {}
        return ImageInfo(
            id=data["Id"],
            size=int(data.get("Size") or 0),
            repo_tags=tuple(data.get("RepoTags") or ()),
            repo_digests=tuple(data.get("RepoDigests") or ()),
            labels=dict(config.get("Labels") or {}),
            user=config.get("User") or "",
            exposed_ports=tuple(sorted((config.get("ExposedPorts") or {}).keys())),
            healthcheck=config.get("Healthcheck"),
            raw=data,
        )

    def require_image(self, ref: str) -> ImageInfo:
        """Inspect a local image, or tell the user to build it."""
        info = self.image(ref)
        if info is None:
            raise ImageNotFoundError(
                f"image '{ref}' does not exist locally: run 'shipit build' first"
            )
        return info

    def tag(self, image: str, repository: str, tag: str) -> None:
        """Point repository:tag at an image (like `docker tag`)."""
        self._call(self.api.tag, image, repository, tag, force=True)

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        import docker.errors

        try:
            self._call(self.api.remove_image, ref, force=force, noprune=False)
        except docker.errors.ImageNotFound:
            return

    def pull(self, reference: str, auth: Auth | None = None) -> str | None:
        """Pull an image (reading the whole stream); return its id, or None if it is not there.

        Without `auth`, docker-py uses the logins in the Docker config.
        """
        import docker.errors

        repository, _, tag = reference.rpartition(":")
        if "/" in tag or not repository:
            repository, tag = reference, "latest"
        try:
            stream = self._call(
                self.api.pull,
                repository,
                tag=tag,
                stream=True,
                decode=True,
                auth_config=auth.as_docker() if auth else None,
            )
            for chunk in self._guard_stream(stream, RegistryError):
                if "error" in chunk or "errorDetail" in chunk:
                    return None
        except (docker.errors.APIError, RegistryError):
            return None
        info = self.image(reference)
        return info.id if info else None

    def history(self, ref: str) -> list[dict[str, Any]]:
        return list(self._call(self.api.history, ref))

    def version(self) -> dict[str, Any]:
        return dict(self._call(self.api.version))

    # ------------------------------------------------------------ build

    def build(
        self,
        fileobj: Any,
        *,
        dockerfile: str,
        tag: str,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        target: str | None = None,
        platform: str | None = None,
        pull: bool = False,
        nocache: bool = False,
        network_mode: str | None = None,
        cache_from: Sequence[str] = (),
        on_event: EventSink = _ignore,
    ) -> str:
        """Build an image from an uncompressed tar context; return its id ('sha256:...')."""
        kwargs: dict[str, Any] = {
            "fileobj": fileobj,
            "custom_context": True,
            "dockerfile": dockerfile,
            "tag": tag,
            "buildargs": dict(buildargs),
            "labels": dict(labels),
            "pull": pull,
            "nocache": nocache,
            "rm": True,
            "forcerm": True,
            "decode": True,
        }
        if target:
            kwargs["target"] = target
        if platform:
            kwargs["platform"] = platform
        if network_mode:
            kwargs["network_mode"] = network_mode
        if cache_from:
            kwargs["cache_from"] = list(cache_from)
        check_build_query(buildargs, labels)
        stream = self._call(self.api.build, **kwargs)
        return read_build_stream(self._guard_stream(stream, BuildError), on_event)

    # ------------------------------------------------------------ registries

    def push(
        self, repository: str, tag: str, auth: Auth | None, on_event: EventSink = _ignore
    ) -> str:
        """Push repository:tag, reading the whole stream; return the digest the registry reported."""
        auth_config = auth.as_docker() if auth else None
        stream = self._call(
            self.api.push, repository, tag=tag, stream=True, decode=True, auth_config=auth_config
        )
        return read_push_stream(self._guard_stream(stream, RegistryError), on_event)

    def distribution_digest(self, reference: str, auth: Auth | None) -> str:
        """The manifest digest the registry serves for a reference (engine's distribution inspect)."""
        import docker.errors

        try:
            data = self._call(
                self.api.inspect_distribution,
                reference,
                auth_config=auth.as_docker() if auth else None,
            )
        except docker.errors.APIError as exc:
            raise classify_registry_message(_api_message(exc), status=exc.status_code) from exc
        digest = (data.get("Descriptor") or {}).get("digest")
        if not digest:
            raise RegistryError(f"the registry returned no digest for {reference}")
        return str(digest)

    def login(self, auth: Auth) -> None:
        """Check credentials against a registry through the engine (`docker login` without storing)."""
        import docker.errors

        try:
            self._call(
                self.api.login,
                username=auth.username,
                password=auth.password,
                registry=auth.registry,
                reauth=True,
            )
        except docker.errors.APIError as exc:
            raise classify_registry_message(
                _api_message(exc), status=exc.status_code, registry=auth.registry
            ) from exc

    # ------------------------------------------------------------ plumbing

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call docker-py, turning connection failures into EngineUnavailableError."""
        import docker.errors
        import requests.exceptions

        try:
            return fn(*args, **kwargs)
        except requests.exceptions.Timeout as exc:
            raise RegistryError(
                "no answer within the stall timeout (the engine or the registry behind it hangs)",
                hint="check the registry, or raise --stall-timeout",
                transient=True,
                kind="timeout",
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise EngineUnavailableError(
                f"lost the connection to the Docker engine at {self.host}",
                hint="check that the engine is still running",
            ) from exc
        except docker.errors.NotFound:
            raise
        except docker.errors.APIError as exc:
            # A 500 quoting a registry request (`Head "http://HOST/v2/...": ... connection
            # reset`) is the registry failing behind the engine: the caller classifies it.
            if (
                exc.status_code is not None
                and exc.status_code >= 500
                and "connect" in str(exc)
                and "/v2/" not in _api_message(exc)
            ):
                raise EngineUnavailableError(
                    f"the Docker engine at {self.host} failed: {exc}"
                ) from exc
            raise

    def _guard_stream(
        self, stream: Iterator[dict[str, Any]], error_cls: type[ShipitError]
    ) -> Iterator[dict[str, Any]]:
        """Re-raise transport and API errors met while reading a stream as shipit errors.

        A build the engine refuses for its URL size (414/431: build args and labels travel in
        the URL) is a usage error, however the refusal reached us.
        """
        try:
            yield from self._guarded(stream, error_cls)
        except Exception as exc:
            too_long = _url_refusal(exc) if error_cls is BuildError else None
            if too_long is not None:
                raise too_long from exc
            raise

    def _guarded(
        self, stream: Iterator[dict[str, Any]], error_cls: type[ShipitError]
    ) -> Iterator[dict[str, Any]]:
        import docker.errors
        import requests.exceptions
        import urllib3.exceptions

        try:
            yield from stream
        except urllib3.exceptions.ReadTimeoutError as exc:
            # docker-py reads streams straight from urllib3: a silent engine raises this.
            raise RegistryError(
                "the Docker engine made no progress within the stall timeout",
                hint="check the registry, or raise --stall-timeout",
                transient=True,
                kind="timeout",
            ) from exc
        except urllib3.exceptions.ProtocolError as exc:
            raise EngineUnavailableError(
                f"lost the connection to the Docker engine at {self.host} while streaming"
            ) from exc
        except docker.errors.APIError as exc:
            # A request the engine refuses outright answers without a stream (e.g. a
            # Dockerfile parse error is a 400); docker-py raises it on the first read.
            if error_cls is BuildError:
                raise _build_failure(_api_message(exc), None, []) from exc
            raise classify_registry_message(_api_message(exc), status=exc.status_code) from exc
        except requests.exceptions.ReadTimeout as exc:
            raise RegistryError(
                "the Docker engine made no progress within the stall timeout",
                transient=True,
                kind="timeout",
            ) from exc
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise EngineUnavailableError(
                f"lost the connection to the Docker engine at {self.host} while streaming"
            ) from exc
        except json.JSONDecodeError as exc:
            raise error_cls("the Docker engine sent an unreadable stream") from exc

    # ------------------------------------------------------------ containers and networks (runtime)

    def images(self, *, label: str, dangling: bool | None = None) -> list[ImageSummary]:
        """Top-level images carrying `label` ("key=value"), newest last.

        Each is inspected for its nanosecond `Created`, so builds made within the same second
        still order correctly (the list only has whole seconds).
        """
        filters: dict[str, Any] = {"label": [label]}
        if dangling is not None:
            filters["dangling"] = dangling
        summaries: list[ImageSummary] = []
        for entry in self._call(self.api.images, filters=filters) or []:
            created = float(entry.get("Created") or 0)
            info = self.image(entry["Id"])
            if info is None:  # removed since it was listed
                continue
            created = self._parse_timestamp(info.raw.get("Created")) or created
            summaries.append(
                ImageSummary(
                    id=entry["Id"],
                    repo_tags=tuple(
                        t for t in entry.get("RepoTags") or () if t and t != "<none>:<none>"
                    ),
                    created=created,
                    size=int(entry.get("Size") or 0),
                    labels=dict(entry.get("Labels") or {}),
                )
            )
        return sorted(summaries, key=lambda s: (s.created, s.id))

    def remove_image_if_unused(self, ref: str) -> str | None:
        """Remove a tag or an image without force; None when done, else why the engine refused.

        Removing one of several tags only untags; removing the last one deletes the image
        and its untagged parent layers. An image a container still uses is refused.
        """
        import docker.errors

        try:
            self._call(self.api.remove_image, ref, force=False, noprune=False)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            return _api_message(exc)
        return None

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

    def _runtime_call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`_call` for container and network requests: a refusal becomes a shipit error."""
        import docker.errors

        try:
            try:
                return self._call(fn, *args, **kwargs)
            except EngineUnavailableError as exc:
                # `_call` reads a 500 mentioning "connect" as an engine outage; for containers
                # that is usually a refusal ("failed programming external connectivity").
                if isinstance(exc.__cause__, docker.errors.APIError):
                    raise exc.__cause__ from None
                raise
        except docker.errors.APIError as exc:
            message = _api_message(exc)
            lowered = message.lower()
            if exc.status_code == 409 or "already in use" in lowered or "already exists" in lowered:
                raise UsageError(
                    f"cannot {what}: {message}", hint="choose another name, or remove the old one"
                ) from exc
            if "port is already allocated" in lowered or "address already in use" in lowered:
                raise UsageError(
                    f"cannot {what}: the host port is already in use",
                    hint="pick another --publish port, or omit it to let Docker choose",
                ) from exc
            if exc.status_code == 404:
                raise UsageError(f"cannot {what}: {message}") from exc
            raise ShipitError(f"the Docker engine refused to {what}: {message}") from exc

    @staticmethod
    def _network_info(data: Mapping[str, Any]) -> NetworkInfo:
        return NetworkInfo(
            id=str(data["Id"]),
            name=str(data.get("Name") or ""),
            driver=str(data.get("Driver") or ""),
            labels=dict(data.get("Labels") or {}),
            containers=tuple((data.get("Containers") or {}).keys()),
        )

    @staticmethod
    def _parse_timestamp(value: Any) -> float | None:
        """Docker's RFC 3339 timestamps (nanoseconds, 'Z') as epoch seconds; None if unreadable."""
        if not isinstance(value, str) or not value:
            return None
        text = value.replace("Z", "+00:00")
        # fromisoformat keeps at most microseconds: cut the fraction to six digits.
        head, dot, rest = text.partition(".")
        if dot:
            digits = "".join(itertools.takewhile(str.isdigit, rest))
            text = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            return None


def _url_refusal(exc: BaseException) -> UsageError | None:
    """The usage error for a 414/431 answer found anywhere in an exception's chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        error = url_too_long(getattr(response, "status_code", None))
        if error is not None:
            return error
        current = current.__cause__ or current.__context__
    return None


def _api_message(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


# ---------------------------------------------------------------- stream readers


def read_build_stream(chunks: Iterator[dict[str, Any]], on_event: EventSink = _ignore) -> str:
    """Consume a build stream; return the image id, or raise BuildError with the failing step."""
    image_id: str | None = None
    step: str | None = None
    tail: deque[str] = deque(maxlen=12)
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            message = str(detail.get("message") or chunk.get("error") or "build failed").strip()
            raise _build_failure(message, step, list(tail))
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = str(aux["ID"])
        text = chunk.get("stream")
        if isinstance(text, str):
            for line in text.splitlines():
                line = line.rstrip()
                if not line:
                    continue
                if line.startswith("Step ") and " : " in line:
                    step = line
                    tail.clear()
                    on_event(BuildStep(line))
                else:
                    if line.startswith("Successfully built ") and image_id is None:
                        image_id = line.split()[-1]
                    tail.append(line)
                    on_event(BuildOutput(line))
        status = chunk.get("status")
        if isinstance(status, str) and status:
            on_event(BuildOutput(status))
    if image_id is None:
        raise BuildError(
            "the build ended without producing an image",
            details=([step] if step else []) + list(tail),
        )
    return image_id


def _build_failure(message: str, step: str | None, tail: list[str]) -> ShipitError:
    lowered = message.lower()
    hint = None
    if "dockerfile parse error" in lowered or "unknown instruction" in lowered:
        # Invalid input (exit 2, like any other): the parser refused it before any step ran.
        return DockerfileError(
            f"Dockerfile syntax error: {message}", hint="fix the Dockerfile line named above"
        )
    if (
        "pull access denied" in lowered
        or "manifest unknown" in lowered
        or ("not found" in lowered and step and " FROM " in step.upper())
    ):
        hint = "the base image is not available to the engine: build or load it, or pass --build-arg to choose another"
    elif "returned a non-zero code" in lowered:
        hint = "fix the failing step; its last output lines are shown above"
    where = f" at {step}" if step else ""
    return BuildError(f"build failed{where}: {message}", hint=hint, details=tail)


def read_push_stream(chunks: Iterator[dict[str, Any]], on_event: EventSink = _ignore) -> str:
    """Consume a push stream; return the pushed digest, or raise the classified registry error."""
    digest: str | None = None
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            message = str(detail.get("message") or chunk.get("error") or "push failed").strip()
            raise classify_registry_message(message)
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
        status = chunk.get("status")
        if not isinstance(status, str):
            continue
        layer = chunk.get("id")
        if layer:
            detail = chunk.get("progressDetail") or {}
            on_event(
                PushProgress(
                    layer=str(layer),
                    status=status,
                    current=detail.get("current"),
                    total=detail.get("total"),
                )
            )
        else:
            on_event(PushStatus(status))
            if digest is None and "digest: sha256:" in status:
                digest = status.split("digest: ", 1)[1].split()[0]
    if digest is None:
        raise RegistryError("the push ended without the registry reporting a digest")
    return digest
