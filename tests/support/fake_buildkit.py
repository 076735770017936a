"""BuildKit's side of the fake engine: ``POST /build?version=2`` answered with a trace stream.

The stream is encoded as the engine sends it (base64 StatusResponse protobufs, then
``moby.image.id``), so shipit's whole BuildKit path runs in unit tests. A test's legacy-format
``build_chunks`` are translated: ``Step N/M : X`` becomes the vertex ``[N/M] X``, other stream
lines its output, and an error its failure (with the exit code a non-zero RUN reports).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from shipit.adapters.engine.buildkit import wire

T0 = 1_700_000_000.0
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_NONZERO = re.compile(r"returned a non-zero code: (\d+)")


def _digest(n: int) -> str:
    return f"sha256:{n:064x}"


def vertex(
    n: int,
    name: str,
    *,
    started: bool = True,
    completed: bool = True,
    cached: bool = False,
    error: str = "",
) -> bytes:
    body = wire.field_string(1, _digest(n)) + wire.field_string(3, name)
    body += wire.field_varint(4, int(cached))
    if started:
        body += wire.field_message(5, wire.encode_timestamp(T0 + n))
    if completed:
        body += wire.field_message(6, wire.encode_timestamp(T0 + n + 0.25))
    body += wire.field_string(7, error)
    return wire.field_message(1, body)


def log(n: int, data: bytes, stream: int = 1) -> bytes:
    body = wire.field_string(1, _digest(n)) + wire.field_message(
        2, wire.encode_timestamp(T0 + n + 0.1)
    )
    return wire.field_message(3, body + wire.field_varint(3, stream) + wire.field_bytes(4, data))


def chunk(*messages: bytes) -> dict[str, Any]:
    return {"id": "moby.buildkit.trace", "aux": base64.b64encode(b"".join(messages)).decode()}


def image_chunk(image_id: str) -> dict[str, Any]:
    return {"id": "moby.image.id", "aux": {"ID": image_id}}


def success(image_id: str, missing_caches: Iterable[str] = ()) -> list[dict[str, Any]]:
    """A small successful build: FROM cached, one RUN printing "hi", and the image id."""
    chunks = [
        chunk(vertex(1, "[internal] load remote build context")),
        *(
            chunk(
                vertex(
                    10 + i,
                    f"importing cache manifest from {ref}",
                    error=f"failed to do request: {ref} not found",
                )
            )
            for i, ref in enumerate(missing_caches)
        ),
        chunk(vertex(2, "[1/2] FROM base", cached=True)),
        chunk(vertex(3, "[2/2] RUN echo hi", completed=False), log(3, b"hi\n")),
        chunk(vertex(3, "[2/2] RUN echo hi")),
        image_chunk(image_id),
    ]
    return chunks


def translate(legacy: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """A legacy-format build stream as BuildKit would report the same build."""
    current: tuple[int, str] | None = None
    count = 0
    for item in legacy:
        text = item.get("stream")
        if isinstance(text, str):
            for line in text.splitlines(keepends=True):
                match = _STEP.match(line.strip())
                if match:
                    count += 1
                    current = (count, f"[{match.group(1)}/{match.group(2)}] {match.group(3)}")
                    yield chunk(vertex(count, current[1], completed=False))
                elif current is not None and not line.startswith((" ---> ", "Successfully ")):
                    yield chunk(log(current[0], line.encode()))
            continue
        aux = item.get("aux")
        if isinstance(aux, Mapping) and aux.get("ID"):
            yield image_chunk(str(aux["ID"]))
            continue
        if "error" in item or "errorDetail" in item:
            message = str((item.get("errorDetail") or {}).get("message") or item.get("error"))
            code = _NONZERO.search(message)
            if current is not None and code:
                failure = f"executor failed running [{current[1]}]: exit code: {code.group(1)}"
                yield chunk(vertex(current[0], current[1], error=failure))
                yield {"error": failure, "errorDetail": {"message": failure}}
            else:
                yield dict(item)
            return


def context_names(data: Any) -> list[str]:
    """The member names of the context tar a build request carried."""
    raw = data if isinstance(data, bytes | bytearray) else data.read()
    if not raw:
        return []  # remote=client-session: the context comes through file sync
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        return tar.getnames()


def build_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    """The request's query in the legacy build's keyword names, as FakeAPI records builds."""
    tags = params.get("t") or []
    kwargs: dict[str, Any] = {
        "tag": tags[0] if tags else None,
        "dockerfile": params.get("dockerfile"),
        "buildargs": json.loads(params.get("buildargs") or "{}"),
        "labels": json.loads(params.get("labels") or "{}"),
        "target": params.get("target"),
        "platform": params.get("platform"),
        "nocache": params.get("nocache") == "1",
        "pull": params.get("pull") == "1",
        "network_mode": params.get("networkmode"),
        "cache_from": json.loads(params["cachefrom"]) if params.get("cachefrom") else None,
        "version": params.get("version"),
        "session": params.get("session"),
        "remote": params.get("remote"),
    }
    return kwargs


class _Response:
    """What FakeAPI's `_post` hands to `_stream_helper`: the chunks of one build."""

    def __init__(self, chunks: list[dict[str, Any]]):
        self.chunks = chunks


class FakeSession:
    """A build session that records what it would serve (its providers' class names)."""

    def __init__(self, api: Any, providers: Iterable[Any], **kwargs: Any):
        self.providers = list(providers)
        self.shared_key = str(kwargs.get("shared_key") or "")
        self.id = f"fake-session-{len(api.sessions) + 1}"
        api.sessions.append(self)

    @property
    def served(self) -> list[str]:
        return [type(p).__name__ for p in self.providers]

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class BuildKitFakeMixin:
    """docker-py's plumbing that shipit's BuildKit builds use, for FakeAPI.

    A ``POST /build?version=2`` is recorded as a ``build`` call (in the legacy build's keyword
    names, plus ``version`` and ``session``) and creates the tagged image as a legacy build
    does. ``build_chunks`` (legacy format) are translated; ``buildkit_chunks`` are sent as given.
    A ``--cache-from`` image the fake does not hold is reported as BuildKit does: a cache
    import step that failed, in a build that goes on.
    """

    base_url = "http+docker://localhost"
    buildkit_chunks: list[dict[str, Any]] | None = None
    # run_build opens its session through this, when the client has it.
    open_build_session = FakeSession

    @property
    def sessions(self) -> list[FakeSession]:
        """Every session opened on this fake, in order."""
        store: list[FakeSession] = self.__dict__.setdefault("_sessions", [])
        return store

    def _url(self, path: str, *args: Any, **kwargs: Any) -> str:
        return self.base_url + path

    def _raise_for_status(self, response: Any) -> None:
        return None

    def _stream_helper(self, response: Any, decode: bool = False) -> Iterator[dict[str, Any]]:
        assert isinstance(response, _Response), "not a response of this fake"
        yield from response.chunks

    def _post(self, url: str, **kwargs: Any) -> _Response:
        assert url.endswith("/build"), f"unexpected POST {url}"
        params = kwargs.get("params") or {}
        assert params.get("version") == "2", "a BuildKit build asks for version=2"
        api: Any = self
        api.context_names = context_names(kwargs.get("data") or b"")
        recorded = build_kwargs(params)
        api._record("build", **recorded)
        if self.buildkit_chunks is not None:
            return _Response(list(self.buildkit_chunks))
        if api.build_chunks is not None:
            return _Response(list(translate(api.build_chunks)))
        tag = str(recorded["tag"])
        image_id = "sha256:" + hashlib.sha256(tag.encode()).hexdigest()  # as fakes.image_id_for
        missing = [ref for ref in recorded["cache_from"] or [] if api._find(ref) is None]
        api.add_image(tag, image_id)
        if recorded["platform"]:  # the image declares the platform it was built for
            os_name, _, arch = str(recorded["platform"]).partition("/")
            api.images[image_id].update({"Os": os_name, "Architecture": arch})
        return _Response(success(image_id, missing))
