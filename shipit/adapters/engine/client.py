"""The docker-py client: the one module that talks to the Docker engine through docker-py.

It turns docker-py's streams into typed events and results and its exceptions into shipit
errors. A build or push stream can carry an ``error`` chunk without docker-py raising, so every
stream is read to its end here and such chunks become exceptions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from shipit.adapters.classify import classify_registry_message
from shipit.adapters.engine.calls import (
    DEFAULT_SOCKET,
    _api_message,
    _build_failure,
)
from shipit.adapters.engine.request_limits import check_build_query
from shipit.adapters.engine.runtime import RuntimeCalls
from shipit.errors import (
    BuildError,
    EngineUnavailableError,
    ImageNotFoundError,
    RegistryError,
)
from shipit.model import (
    Auth,
    BuildOutput,
    BuildStep,
    Event,
    EventSink,
    ImageInfo,
    ImageSummary,
    PushProgress,
    PushStatus,
)


def _ignore(_: Event) -> None:
    return None


# How long the first request may take: a healthy engine answers /version in milliseconds.
PROBE_SECONDS = 10.0
# Any version docker-py accepts, so that building the client makes no request (the probe
# replaces it with the engine's own).
_PROBE_API_VERSION = "1.24"


def _probe_api_version(api: Any, host: str, timeout: float) -> dict[str, Any]:
    """The engine's `GET /version` answer, telling a silent engine from a missing one."""
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
    return dict(version)


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
# ---------------------------------------------------------------- the engine


class Engine(RuntimeCalls):
    """A connected Docker engine. Build one with `Engine.connect(env)`; tests pass a fake `api`.

    Images, builds, pushes and logins are here; runtime requests (containers, networks) in
    `RuntimeCalls`, and the error translation they share in `EngineBase`.
    """

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
        if host.startswith("ssh://"):
            # docker-py would need paramiko (or an ssh pipe BuildKit's session cannot use).
            raise EngineUnavailableError(
                f"DOCKER_HOST {host}: shipit does not reach engines over ssh://",
                hint="forward the engine's socket instead: ssh -nNT -L "
                "/tmp/docker.sock:/var/run/docker.sock USER@HOST, "
                "then DOCKER_HOST=unix:///tmp/docker.sock",
            )
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
        answer = _probe_api_version(api, host, probe)
        api._version = answer["ApiVersion"]
        api.timeout = timeout
        engine = cls(api, host=host)
        engine._version_answer = answer  # the probe's answer serves version() once more
        return engine

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
        """The engine's version (asked once: connect()'s probe already has it)."""
        answer = getattr(self, "_version_answer", None)
        if answer is None:
            answer = self._version_answer = dict(self._call(self.api.version))
        return dict(answer)

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
