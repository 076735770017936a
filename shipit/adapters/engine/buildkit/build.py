"""Running one BuildKit build on the engine: the request, an optional session, the trace.

`run_build` posts ``/build?version=2`` (transport.post_build), opens a session first when
providers are given (secrets, SSH agents, registry credentials), and reads the response to its
end through trace.read_trace_stream. docker-py's errors become shipit errors through the
engine's own stream guard, so BuildKit and legacy builds fail the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shipit.adapters.engine.buildkit.trace import BuildTrace, TraceEvent, read_trace_stream
from shipit.adapters.engine.buildkit.transport import Body, BuildRequest, post_build
from shipit.errors import BuildError

if TYPE_CHECKING:
    from shipit.adapters.engine.buildkit.session import Provider

# POST /session and /build?version=2 arrived with API 1.39 (Docker 18.09).
MIN_API = (1, 39)
# BuildKit refuses "bridge" by name; its default network is the same bridge.
_NETWORK_NAMES = {"bridge": "default"}


def _api_tuple(version: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", version or "")
    return tuple(int(n) for n in numbers[:2]) if numbers else (0,)


def buildkit_support(version: Mapping[str, Any]) -> str | None:
    """None when the engine (its ``/version`` answer) builds with BuildKit, else why not."""
    api = str(version.get("ApiVersion") or "")
    if _api_tuple(api) < MIN_API:
        return f"the engine's API {api or '?'} predates BuildKit (API 1.39, Docker 18.09)"
    if str(version.get("Os") or "linux").lower() != "linux":
        return f"BuildKit does not build on {version.get('Os')} engines"
    return None


def network_mode(value: str | None) -> str | None:
    """The network mode as BuildKit names it (``bridge`` is its ``default``)."""
    if not value:
        return None
    return _NETWORK_NAMES.get(value, value)


def run_build(
    engine: Any,
    request: BuildRequest,
    context: Body,
    *,
    providers: Sequence[Provider] = (),
    on_event: Callable[[TraceEvent], None] | None = None,
    session_name: str = "shipit",
    shared_key: str = "",
    trace: BuildTrace | None = None,
) -> str:
    """Build with BuildKit and return the image id; a failed build raises BuildError.

    With ``providers`` a session is opened for the build and closed after its stream ended
    (grpcio is imported only then); ``session_name`` and ``shared_key`` let the engine reuse
    what file sync sent for the same directory before. ``engine`` is an Engine (its docker-py client and its
    stream guard turn transport errors into shipit errors).
    """
    trace = trace if trace is not None else BuildTrace()
    sink = on_event or (lambda _event: None)
    if not providers:
        return _stream(engine, request, context, sink, trace)
    from dataclasses import replace

    # A client may bring its own session (the unit tests' fake engine does); else a real one.
    opener = getattr(engine.api, "open_build_session", None)
    if opener is None:
        from shipit.adapters.engine.buildkit.session import Session

        opener = Session
    with opener(engine.api, providers, name=session_name, shared_key=shared_key) as session:
        return _stream(engine, replace(request, session_id=session.id), context, sink, trace)


def _stream(
    engine: Any,
    request: BuildRequest,
    context: Body,
    on_event: Callable[[TraceEvent], None],
    trace: BuildTrace,
) -> str:
    # post_build is a generator: the request goes out on the first read, inside the guard.
    guarded = engine._guard_stream(post_build(engine.api, request, context), BuildError)
    return read_trace_stream(guarded, on_event, trace=trace)
