"""BuildKit's status trace: decode `moby.buildkit.trace` chunks and follow the build's steps.

``POST /build?version=2`` streams ``{"id": "moby.buildkit.trace", "aux": BASE64}`` where BASE64
is a protobuf ``moby.buildkit.v1.StatusResponse`` (moby/buildkit
``api/services/control/control.proto``). `decode_status` turns one into typed records;
`BuildTrace` follows them the way docker's plain progress does (one numbered step per vertex,
CACHED / DONE with its time / ERROR, the step's output lines) and yields `TraceEvent`s.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipit.adapters.engine.buildkit.wire import WireError, decode_timestamp, iter_fields, signed64
from shipit.errors import BuildError, DockerfileError
from shipit.text import plain_text

TRACE_ID = "moby.buildkit.trace"
IMAGE_ID = "moby.image.id"
TAIL_LINES = 12
# The step BuildKit shows for each --cache-from source (solver/llbsolver/solver.go).
CACHE_IMPORT = "importing cache manifest from "
# A vertex error of a failing RUN ends with it: "...: exit code: 3" (BuildKit 0.8 through 0.13).
_EXIT_CODE_RE = re.compile(r"exit code: (\d+)\s*$")


class TraceError(ValueError):
    """A trace chunk that is not a StatusResponse."""


# ---------------------------------------------------------------- wire records


@dataclass(frozen=True)
class ProgressGroup:
    """pb.ProgressGroup (solver/pb/ops.proto): vertices shown as one step."""

    id: str = ""
    name: str = ""
    weak: bool = False


@dataclass(frozen=True)
class Vertex:
    """One node of the build graph: a Dockerfile step or an internal one."""

    digest: str
    inputs: tuple[str, ...] = ()
    name: str = ""
    cached: bool = False
    started: float | None = None
    completed: float | None = None
    error: str = ""
    progress_group: ProgressGroup | None = None


@dataclass(frozen=True)
class VertexStatus:
    """Progress of one piece of a vertex's work (a layer extracted, a context transferred)."""

    id: str
    vertex: str
    name: str = ""
    current: int = 0
    total: int = 0
    timestamp: float | None = None
    started: float | None = None
    completed: float | None = None


@dataclass(frozen=True)
class VertexLog:
    """Bytes a vertex's process wrote (stream 1 stdout, 2 stderr); not split at line ends."""

    vertex: str
    timestamp: float | None = None
    stream: int = 0
    data: bytes = b""


@dataclass(frozen=True)
class VertexWarning:
    """A warning the frontend attached to a vertex (BuildKit 0.10 and later)."""

    vertex: str
    level: int = 0
    short: str = ""
    detail: tuple[str, ...] = ()
    url: str = ""


@dataclass(frozen=True)
class StatusResponse:
    """One moby.buildkit.v1.StatusResponse."""

    vertexes: tuple[Vertex, ...] = ()
    statuses: tuple[VertexStatus, ...] = ()
    logs: tuple[VertexLog, ...] = ()
    warnings: tuple[VertexWarning, ...] = ()


# ---------------------------------------------------------------- decoding


def _text(value: int | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _time(value: int | bytes) -> float | None:
    return decode_timestamp(value) if isinstance(value, bytes) else None


def _int(value: int | bytes) -> int:
    return signed64(value) if isinstance(value, int) else 0


def _bytes(value: int | bytes) -> bytes:
    return value if isinstance(value, bytes) else b""


def _group(value: int | bytes) -> ProgressGroup | None:
    return _progress_group(value) if isinstance(value, bytes) else None


# Each message's fields: number -> (attribute, how its value reads). An attribute ending in
# "+" is a repeated field, gathered into a tuple. Unknown numbers are skipped, as protobuf does.
Schema = Mapping[int, tuple[str, Callable[[int | bytes], Any]]]
_PROGRESS_GROUP: Schema = {1: ("id", _text), 2: ("name", _text), 3: ("weak", bool)}
_VERTEX: Schema = {
    1: ("digest", _text), 2: ("inputs+", _text), 3: ("name", _text), 4: ("cached", bool),
    5: ("started", _time), 6: ("completed", _time), 7: ("error", _text),
    8: ("progress_group", _group),
}  # fmt: skip
_STATUS: Schema = {
    1: ("id", _text), 2: ("vertex", _text), 3: ("name", _text), 4: ("current", _int),
    5: ("total", _int), 6: ("timestamp", _time), 7: ("started", _time), 8: ("completed", _time),
}  # fmt: skip
_LOG: Schema = {
    1: ("vertex", _text),
    2: ("timestamp", _time),
    3: ("stream", _int),
    4: ("data", _bytes),
}
_WARNING: Schema = {
    1: ("vertex", _text), 2: ("level", _int), 3: ("short", _text), 4: ("detail+", _text),
    5: ("url", _text),
}  # fmt: skip


def _fields(buf: bytes, schema: Schema, **values: Any) -> dict[str, Any]:
    """The attributes of one message, read by `schema`, over the defaults in `values`."""
    repeated: dict[str, list[Any]] = {}
    for number, _, value in iter_fields(buf):
        if number not in schema:
            continue
        name, read = schema[number]
        if name.endswith("+"):
            repeated.setdefault(name[:-1], []).append(read(value))
        else:
            values[name] = read(value)
    return {**values, **{name: tuple(items) for name, items in repeated.items()}}


def _progress_group(buf: bytes) -> ProgressGroup:
    return ProgressGroup(**_fields(buf, _PROGRESS_GROUP))


def _vertex(buf: bytes) -> Vertex:
    return Vertex(**_fields(buf, _VERTEX, digest=""))


def _status(buf: bytes) -> VertexStatus:
    return VertexStatus(**_fields(buf, _STATUS, id="", vertex=""))


def _log(buf: bytes) -> VertexLog:
    return VertexLog(**_fields(buf, _LOG, vertex=""))


def _warning(buf: bytes) -> VertexWarning:
    return VertexWarning(**_fields(buf, _WARNING, vertex=""))


def decode_status(data: bytes) -> StatusResponse:
    """Decode one StatusResponse message; unknown fields are skipped, as protobuf does."""
    vertexes: list[Vertex] = []
    statuses: list[VertexStatus] = []
    logs: list[VertexLog] = []
    warnings: list[VertexWarning] = []
    try:
        for number, _, value in iter_fields(data):
            if not isinstance(value, bytes):
                continue
            if number == 1:
                vertexes.append(_vertex(value))
            elif number == 2:
                statuses.append(_status(value))
            elif number == 3:
                logs.append(_log(value))
            elif number == 4:
                warnings.append(_warning(value))
    except WireError as exc:
        raise TraceError(f"unreadable BuildKit status: {exc}") from exc
    return StatusResponse(tuple(vertexes), tuple(statuses), tuple(logs), tuple(warnings))


def decode_trace_chunk(chunk: Mapping[str, Any]) -> StatusResponse | None:
    """The StatusResponse a build stream chunk carries, or None for any other chunk."""
    if chunk.get("id") != TRACE_ID:
        return None
    aux = chunk.get("aux")
    if not isinstance(aux, str):
        raise TraceError("a BuildKit trace chunk without its base64 payload")
    try:
        data = base64.b64decode(aux, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TraceError("a BuildKit trace chunk whose payload is not base64") from exc
    return decode_status(data)


# ---------------------------------------------------------------- text helpers


def is_internal(name: str) -> bool:
    """A step of BuildKit's own (loading the context, importing cache, exporting the image)
    rather than a Dockerfile instruction, which BuildKit names ``[stage n/m] INSTRUCTION``."""
    return name.startswith("[internal]") or not name.startswith("[")


def exit_code_of(error: str) -> int | None:
    """The exit code a failing RUN's vertex error ends with, if it says one."""
    match = _EXIT_CODE_RE.search(error)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------- what the build did


@dataclass(frozen=True)
class StepStarted:
    """A step began (docker's plain progress prints ``#3 [builder 2/5] RUN ...``)."""

    index: int
    name: str


@dataclass(frozen=True)
class StepLog:
    """One line a step's process wrote, without terminal escapes (stream 1 stdout, 2 stderr)."""

    index: int
    name: str
    text: str
    stream: int = 1
    # Seconds since the step started, as docker's plain progress prefixes each line.
    offset: float | None = None


@dataclass(frozen=True)
class StepProgress:
    """Progress of part of a step's work (``exporting layers``, ``writing image sha256:...``)."""

    index: int
    name: str
    id: str
    current: int = 0
    total: int = 0
    done: bool = False


@dataclass(frozen=True)
class StepFinished:
    """A step ended: reused from the cache, done after ``seconds``, or failed with ``error``."""

    index: int
    name: str
    cached: bool = False
    seconds: float | None = None
    error: str = ""

    @property
    def canceled(self) -> bool:
        """Stopped because another step failed (the error is the context's cancellation)."""
        return self.error.endswith("context canceled")


@dataclass(frozen=True)
class BuildWarning:
    """A warning the frontend reported, with the step it is about when it names one."""

    text: str
    step: str | None = None


TraceEvent = StepStarted | StepLog | StepProgress | StepFinished | BuildWarning


@dataclass
class Step:
    """What the trace has said about one vertex so far."""

    index: int
    digest: str
    name: str
    started: float | None = None
    completed: float | None = None
    cached: bool = False
    error: str = ""
    announced: bool = False
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    # Per stream: the start of a line whose end has not arrived yet, and when it began.
    # (Bytes, so a character split across two messages is decoded whole.)
    partial: dict[int, tuple[bytes, float | None]] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.completed is None:
            return None
        return max(0.0, self.completed - self.started)

    @property
    def exit_code(self) -> int | None:
        return exit_code_of(self.error) if self.error else None

    @property
    def internal(self) -> bool:
        return is_internal(self.name)


class BuildTrace:
    """Follows a build's StatusResponses; `feed` returns what happened, in order.

    Steps are numbered in the order they start (docker 20.10 numbers them as they first
    appear, which skips numbers and counts backwards where a later step is listed first);
    steps the build never reaches are not shown. A step finishes once per round it runs. Its
    output is cut into lines: a line split across messages waits for its end (or `close`).
    """

    def __init__(self) -> None:
        self.steps: dict[str, Step] = {}
        self.warnings: list[BuildWarning] = []
        self._numbered = 0

    def feed(self, status: StatusResponse) -> list[TraceEvent]:
        events: list[TraceEvent] = []
        for vertex in status.vertexes:
            events.extend(self._vertex(vertex))
        for item in status.statuses:
            step = self.steps.get(item.vertex)
            if step is not None:
                events.extend(self._announce(step))
                events.append(
                    StepProgress(
                        step.index,
                        step.name,
                        item.id,
                        item.current,
                        item.total,
                        item.completed is not None,
                    )
                )
        for log in status.logs:
            events.extend(self._log(log))
        for warning in status.warnings:
            known = self.steps.get(warning.vertex)
            event = BuildWarning(warning.short.strip(), known.name if known else None)
            self.warnings.append(event)
            events.append(event)
        return events

    def close(self) -> list[TraceEvent]:
        """Flush output lines that never got their line end."""
        events: list[TraceEvent] = []
        for step in self.steps.values():
            events.extend(self._flush(step))
        return events

    # ------------------------------------------------------------ summary

    @property
    def failed(self) -> Step | None:
        """The step whose failure ended the build (not the ones canceled because of it, nor a
        cache import: BuildKit builds on without a cache source it cannot read)."""
        for step in self.steps.values():
            if (
                step.error
                and not step.error.endswith("context canceled")
                and not step.name.startswith(CACHE_IMPORT)
            ):
                return step
        return None

    @property
    def unavailable_caches(self) -> list[tuple[str, str]]:
        """(reference, error) of each cache source the engine could not import."""
        return [
            (step.name[len(CACHE_IMPORT) :], step.error)
            for step in self.steps.values()
            if step.error and step.name.startswith(CACHE_IMPORT)
        ]

    @property
    def total_seconds(self) -> float | None:
        """From the first step's start to the last step's end, as the engine timed them."""
        starts = [s.started for s in self.steps.values() if s.started is not None]
        ends = [s.completed for s in self.steps.values() if s.completed is not None]
        if not starts or not ends:
            return None
        return max(0.0, max(ends) - min(starts))

    def counts(self) -> tuple[int, int]:
        """(Dockerfile steps finished, of which cached)."""
        done = [s for s in self.steps.values() if not s.internal and s.completed is not None]
        return len(done), sum(1 for s in done if s.cached)

    # ------------------------------------------------------------ internals

    def _step(self, vertex: Vertex) -> Step:
        step = self.steps.get(vertex.digest)
        if step is None:
            step = Step(index=0, digest=vertex.digest, name=vertex.name)
            self.steps[vertex.digest] = step
        elif vertex.name:
            step.name = vertex.name
        return step

    def _announce(self, step: Step) -> list[TraceEvent]:
        if step.announced:
            return []
        step.announced = True
        if not step.index:
            self._numbered += 1
            step.index = self._numbered
        return [StepStarted(step.index, step.name)]

    def _vertex(self, vertex: Vertex) -> list[TraceEvent]:
        step = self._step(vertex)
        if vertex.error:
            step.error = vertex.error
        if vertex.started is None and vertex.completed is None:
            return []  # known, not started: a step the build may never reach
        if vertex.completed is None and step.completed is not None:
            # Started again (BuildKit resolves some vertices twice): a new round of it.
            step.completed = None
            step.started = None
            step.announced = False
        if step.started is None:
            step.started = vertex.started
        if step.completed is None:
            step.cached = vertex.cached
        events = self._announce(step)
        if vertex.completed is not None:
            first = step.completed is None
            step.completed = max(vertex.completed, step.completed or vertex.completed)
            if first:
                events.extend(self._flush(step))
                events.append(
                    StepFinished(step.index, step.name, step.cached, step.seconds, step.error)
                )
        return events

    def _flush(self, step: Step) -> list[TraceEvent]:
        events: list[TraceEvent] = []
        for stream, (rest, when) in step.partial.items():
            events.extend(self._line(step, rest, stream, when))
        step.partial.clear()
        return events

    def _log(self, log: VertexLog) -> list[TraceEvent]:
        step = self.steps.get(log.vertex)
        if step is None:
            return []
        events = self._announce(step)
        held, when = step.partial.pop(log.stream, (b"", log.timestamp))
        *lines, rest = (held + log.data).split(b"\n")
        for line in lines:
            events.extend(self._line(step, line, log.stream, when))
            when = log.timestamp
        if rest:
            step.partial[log.stream] = (rest, when)
        return events

    def _line(self, step: Step, raw: bytes, stream: int, when: float | None) -> list[TraceEvent]:
        # A carriage return redraws the line on a terminal: keep what would stay visible.
        visible = raw.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1]
        text = plain_text(visible).rstrip()
        if not text:
            return []
        step.tail.append(text)
        offset = None
        if when is not None and step.started is not None:
            offset = max(0.0, when - step.started)
        return [StepLog(step.index, step.name, text, stream, offset)]


# ---------------------------------------------------------------- docker's plain format


def plain_lines(event: TraceEvent) -> list[str]:
    """The lines docker's plain progress prints for an event (escape-free text)."""
    if isinstance(event, StepStarted):
        return [f"#{event.index} {plain_text(event.name)}"]
    if isinstance(event, StepLog):
        when = f" {event.offset:.3f}" if event.offset is not None else ""
        return [f"#{event.index}{when} {event.text}"]
    if isinstance(event, StepFinished):
        if event.canceled:
            return [f"#{event.index} CANCELED"]
        if event.error:
            return [f"#{event.index} ERROR: {plain_text(event.error)}"]
        if event.cached:
            return [f"#{event.index} CACHED"]
        took = f" {event.seconds:.1f}s" if event.seconds is not None else ""
        return [f"#{event.index} DONE{took}"]
    if isinstance(event, StepProgress):
        if not event.done:
            return []
        size = f" {event.current}/{event.total} bytes" if event.total else ""
        return [f"#{event.index} {plain_text(event.id)}{size} done"]
    where = f" ({plain_text(event.step)})" if event.step else ""
    return [f"warning: {plain_text(event.text)}{where}"]


def iter_trace(chunks: Iterator[Mapping[str, Any]], trace: BuildTrace) -> Iterator[TraceEvent]:
    """The events of every trace chunk in ``chunks`` (other chunks are skipped)."""
    for chunk in chunks:
        status = decode_trace_chunk(chunk)
        if status is not None:
            yield from trace.feed(status)
    yield from trace.close()


# ---------------------------------------------------------------- reading a whole build


def _ignore(_: TraceEvent) -> None:
    return None


def read_trace_stream(
    chunks: Iterator[Mapping[str, Any]],
    on_event: Callable[[TraceEvent], None] = _ignore,
    *,
    trace: BuildTrace | None = None,
) -> str:
    """Read a ``/build?version=2`` response to its end; return the image id ('sha256:...').

    The engine answers 200 even when the build fails: the failure is an ``errorDetail`` chunk,
    raised here as a BuildError naming the failing step, its exit code and last output lines.
    """
    trace = trace if trace is not None else BuildTrace()
    image_id: str | None = None
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            for event in trace.close():
                on_event(event)
            detail = chunk.get("errorDetail") or {}
            message = str(detail.get("message") or chunk.get("error") or "build failed")
            raise build_failure(message.strip(), trace)
        aux = chunk.get("aux")
        if chunk.get("id") == IMAGE_ID and isinstance(aux, Mapping) and aux.get("ID"):
            image_id = str(aux["ID"])
            continue
        status = decode_trace_chunk(chunk)
        if status is not None:
            for event in trace.feed(status):
                on_event(event)
    for event in trace.close():
        on_event(event)
    if image_id is None:
        raise BuildError("the build ended without producing an image")
    return image_id


# Prefixes BuildKit wraps a frontend's error in (20.10 says the first two, later engines the last).
_WRAPPERS = (
    "failed to solve with frontend dockerfile.v0: ",
    "failed to create LLB definition: ",
    "failed to solve: ",
)
_STEP_SHOWN = 120


def _unwrap(message: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPERS:
            if message.startswith(prefix):
                message, changed = message[len(prefix) :], True
    return message


def build_failure(message: str, trace: BuildTrace) -> BuildError | DockerfileError:
    """The BuildError for a failed BuildKit build: what failed, its output, what to do."""
    message = plain_text(_unwrap(message))
    lowered = message.lower()
    if "unknown instruction: ././@" in lowered:
        # The engine took the upload for a Dockerfile: its first tar header was an extension.
        return BuildError(
            "the engine read the build context as a Dockerfile: the archive's first entry "
            "has a name longer than 100 bytes",
            hint="rename the context's first file or folder (in name order) to a shorter name",
        )
    if "dockerfile parse error" in lowered or "unknown instruction" in lowered:
        # Invalid input (exit 2, README's exit-code rule): nothing was built.
        return DockerfileError(
            f"Dockerfile syntax error: {message}", hint="fix the Dockerfile line named above"
        )
    step = trace.failed
    if step is None:
        return BuildError(f"build failed: {message}")
    name = plain_text(step.name)
    if len(name) > _STEP_SHOWN:
        name = name[: _STEP_SHOWN - 3] + "..."
    details = list(step.tail)
    code = step.exit_code
    if code is not None:
        return BuildError(
            f"build failed at {name}: exit code {code}",
            hint="fix the failing step; its last output lines are shown above",
            details=details,
        )
    base = "[internal] load metadata for "
    if step.name.startswith(base):
        reason = message
        if "no active session" in lowered:
            # The engine asked for credentials and shipit had none to serve (no login).
            reason = "its registry asks for credentials and none are configured for it"
        return BuildError(
            f"base image {step.name[len(base) :]} is not available: {reason}",
            hint="build or load it into the engine, log in to its registry "
            "(shipit login or docker login), or pass --build-arg to choose another",
        )
    hint = None
    if "no active sessions" in lowered:
        hint = "this step needs a build secret or an SSH agent: pass --secret or --ssh"
    elif "no ssh key" in lowered:
        hint = "the step mounts an SSH agent: pass --ssh default (SSH_AUTH_SOCK) or --ssh ID=SOCKET"
    return BuildError(f"build failed at {name}: {message}", hint=hint, details=details)
