"""BuildKit's status trace, decoded from streams recorded on a real engine (20.10, BuildKit 0.8).

The fixtures come from tests/buildkit/record_trace.py: every chunk of a `POST /build?version=2`
response, one JSON object per line.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from shipit.adapters.engine.buildkit import wire
from shipit.adapters.engine.buildkit.trace import (
    BuildTrace,
    BuildWarning,
    ProgressGroup,
    StatusResponse,
    StepFinished,
    StepLog,
    StepStarted,
    TraceError,
    TraceEvent,
    decode_status,
    decode_trace_chunk,
    exit_code_of,
    is_internal,
    iter_trace,
    plain_lines,
    read_trace_stream,
)
from shipit.errors import BuildError, DockerfileError, ExitCode
from shipit.text import plain_text

FIXTURES = Path(__file__).parent / "fixtures" / "trace"


def chunks(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def events(name: str) -> tuple[list[TraceEvent], BuildTrace]:
    trace = BuildTrace()
    return list(iter_trace(iter(chunks(name)), trace)), trace


def plain(name: str) -> list[str]:
    return [line for event in events(name)[0] for line in plain_lines(event)]


def started(evs: list[TraceEvent]) -> list[str]:
    return [e.name for e in evs if isinstance(e, StepStarted)]


def finished(evs: list[TraceEvent]) -> dict[str, StepFinished]:
    return {e.name: e for e in evs if isinstance(e, StepFinished)}


def logs(evs: list[TraceEvent], step_prefix: str = "") -> list[str]:
    return [e.text for e in evs if isinstance(e, StepLog) and e.name.startswith(step_prefix)]


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.jsonl")))
def test_every_recorded_trace_chunk_decodes(name: str) -> None:
    decoded = [decode_trace_chunk(c) for c in chunks(name)]
    statuses = [d for d in decoded if d is not None]
    assert statuses, "a recorded build has trace chunks"
    assert all(v.digest.startswith("sha256:") for s in statuses for v in s.vertexes)
    assert all(log.vertex.startswith("sha256:") for s in statuses for log in s.logs)


def test_vertex_fields_are_decoded_from_a_recorded_chunk() -> None:
    vertices = [
        v
        for c in chunks("cached")
        if (status := decode_trace_chunk(c)) is not None
        for v in status.vertexes
    ]
    copy = [v for v in vertices if v.name == "[3/4] COPY app.txt /app.txt"]
    assert copy[-1].cached
    assert copy[-1].started is not None and copy[-1].completed is not None
    assert copy[-1].completed >= copy[-1].started > 1.6e9
    assert len(copy[-1].inputs) == 2 and all(i.startswith("sha256:") for i in copy[-1].inputs)


def test_status_and_log_records_are_decoded() -> None:
    statuses = [decode_trace_chunk(c) for c in chunks("failing")]
    logs_seen = [log for s in statuses if s is not None for log in s.logs]
    stderr = [log for log in logs_seen if log.stream == 2]
    assert [log.data for log in stderr] == [b"line two\n"]
    assert all(log.timestamp is not None for log in logs_seen)
    exporting = [st for c in chunks("cached") if (s := decode_trace_chunk(c)) for st in s.statuses]
    assert exporting[0].id == "exporting layers"
    assert exporting[-1].id.startswith("naming to docker.io/library/")
    assert exporting[-1].completed is not None


def test_other_chunks_are_not_trace_chunks() -> None:
    assert decode_trace_chunk({"id": "moby.image.id", "aux": {"ID": "sha256:x"}}) is None
    assert decode_trace_chunk({"stream": "Successfully tagged x:latest\n"}) is None


@pytest.mark.parametrize(
    "chunk",
    [
        {"id": "moby.buildkit.trace", "aux": "not base64!"},
        {"id": "moby.buildkit.trace", "aux": {"ID": "x"}},
        {"id": "moby.buildkit.trace", "aux": base64.b64encode(b"\x0a\x05ab").decode()},
    ],
)
def test_a_malformed_trace_chunk_raises_trace_error(chunk: dict[str, Any]) -> None:
    with pytest.raises(TraceError):
        decode_trace_chunk(chunk)


def test_warnings_are_decoded() -> None:
    # BuildKit 0.8 (engine 20.10) has no warnings field; this message is encoded by field
    # number from control.proto, as BuildKit 0.10+ sends it.
    digest = "sha256:" + "a" * 64
    vertex = wire.field_string(1, digest) + wire.field_string(3, "[1/2] FROM x")
    warning = (
        wire.field_string(1, digest)
        + wire.field_varint(2, 1)
        + wire.field_bytes(3, b"FromAsCasing: 'as' and 'FROM' keywords' casing do not match")
        + wire.field_bytes(4, b"detail one")
        + wire.field_string(5, "https://docs.docker.com/go/dockerfile/rule/from-as-casing/")
    )
    status = decode_status(wire.field_message(1, vertex) + wire.field_message(4, warning))
    assert status.warnings[0].level == 1
    assert status.warnings[0].detail == ("detail one",)
    assert status.warnings[0].url.endswith("from-as-casing/")
    trace = BuildTrace()
    assert trace.feed(status) == [
        BuildWarning("FromAsCasing: 'as' and 'FROM' keywords' casing do not match", "[1/2] FROM x")
    ]


def test_repeated_inputs_and_a_progress_group_are_decoded() -> None:
    # BuildKit 0.8 sends no progress groups; encoded by field number from ops.proto.
    group = (
        wire.field_string(1, "g1") + wire.field_string(2, "copy files") + wire.field_varint(3, 1)
    )
    vertex = (
        wire.field_string(1, "sha256:c")
        + wire.field_string(2, "sha256:a")
        + wire.field_string(2, "sha256:b")
        + wire.field_varint(4, 1)
        + wire.field_message(8, group)
    )
    (decoded,) = decode_status(wire.field_message(1, vertex)).vertexes
    assert decoded.inputs == ("sha256:a", "sha256:b") and decoded.cached
    assert decoded.progress_group == ProgressGroup("g1", "copy files", weak=True)
    (plain,) = decode_status(wire.field_message(1, wire.field_string(1, "sha256:d"))).vertexes
    assert (plain.inputs, plain.progress_group, plain.started) == ((), None, None)


def test_unknown_fields_are_skipped() -> None:
    known = wire.field_string(1, "sha256:b") + wire.field_string(3, "x")
    vertex = known + wire.field_varint(99, 7) + wire.field_string(100, "later field")
    status = decode_status(wire.field_message(1, vertex) + wire.field_varint(50, 1))
    assert status == decode_status(wire.field_message(1, known))
    assert isinstance(status, StatusResponse)


# ---------------------------------------------------------------- the steps docker shows


def test_cached_rebuild_shows_every_step_cached() -> None:
    evs, trace = events("cached")
    done = finished(evs)
    for step in (
        "[2/4] RUN echo building && sleep 0.2",
        "[3/4] COPY app.txt /app.txt",
        "[4/4] RUN cat /app.txt",
    ):
        assert done[step].cached
    assert trace.counts() == (4, 3)
    lines = plain("cached")
    index = lines.index("#6 [3/4] COPY app.txt /app.txt")
    assert lines[index + 1] == "#6 CACHED"
    assert trace.total_seconds is not None and trace.total_seconds < 1.0


def test_fresh_build_shows_done_with_each_steps_time() -> None:
    evs, trace = events("fresh")
    run = finished(evs)["[2/4] RUN echo building && sleep 0.2"]
    assert not run.cached and run.seconds is not None and run.seconds >= 0.2
    assert logs(evs, "[2/4]") == ["building"]
    assert f"#{run.index} DONE {run.seconds:.1f}s" in plain("fresh")
    assert trace.counts() == (4, 1)  # only FROM comes from the cache


def test_steps_are_numbered_in_the_order_they_start() -> None:
    evs, _ = events("failing")
    numbers = [e.index for e in evs if isinstance(e, StepStarted)]
    assert numbers == list(range(1, len(numbers) + 1))
    # The step after the failure was listed by the engine but never started: not shown.
    assert "[4/4] RUN echo never runs" not in started(evs)


def test_multi_stage_steps_carry_their_stage_names() -> None:
    evs, _ = events("multistage")
    names = started(evs)
    assert "[builder 2/2] RUN echo compiling && sleep 1 && echo compiled > /out.txt" in names
    assert "[assets 2/2] RUN echo assets && sleep 1 && echo assets > /assets.txt" in names
    assert "[stage-2 4/4] RUN cat /out.txt /assets.txt" in names
    assert logs(evs, "[stage-2 4/4]") == ["compiled", "assets"]


def test_independent_stages_ran_in_parallel() -> None:
    _, trace = events("multistage")
    runs = [s for s in trace.steps.values() if " 2/2] RUN " in s.name]
    assert len(runs) == 2
    first, second = runs
    assert first.started is not None and second.started is not None
    assert first.completed is not None and second.completed is not None
    assert first.started < second.completed and second.started < first.completed
    total = trace.total_seconds
    assert total is not None
    assert total < sum(s.seconds or 0 for s in trace.steps.values())


def test_interleaved_output_of_parallel_steps_keeps_its_step() -> None:
    lines = plain("multistage")
    builder = next(
        line
        for line in lines
        if line.endswith(" [builder 2/2] RUN echo compiling && sleep 1 && echo compiled > /out.txt")
    )
    number = builder.split()[0]
    assert any(line.startswith(f"{number} ") and line.endswith(" compiling") for line in lines)


def test_a_failing_run_keeps_its_last_lines_and_exit_code() -> None:
    evs, trace = events("failing")
    step = trace.failed
    assert step is not None
    assert step.name.startswith("[3/4] RUN echo line one")
    assert step.exit_code == 3
    assert list(step.tail) == [f"output {i}" for i in range(4, 16)]
    assert "line two" in logs(evs, "[3/4]")  # stderr is shown as well
    error_line = plain("failing")[-1]
    assert error_line.startswith("#6 ERROR: executor failed running [/bin/sh -c echo line one")
    assert error_line.endswith("exit code: 3")


def test_hostile_text_is_kept_literally_without_terminal_escapes() -> None:
    evs, _ = events("hostile")
    assert logs(evs, "[2/2]") == [
        "[/dim] closing tag",
        "[bold]x",
        "red and [link=http://x]y[/link]",
        '{"json": true}',
    ]
    assert any("[/dim]" in name for name in started(evs))
    assert all("\x1b" not in line for line in plain("hostile"))


def test_carriage_returns_and_missing_line_ends() -> None:
    evs, _ = events("partial")
    # 'no line end\r1%\r2%\r3%\rdone\n' arrives in four messages: a terminal would show "done".
    assert logs(evs, "[2/2]") == ["done"]


def test_log_split_inside_a_character_and_a_line() -> None:
    digest = "sha256:" + "c" * 64
    vertex = wire.field_string(1, digest) + wire.field_string(3, "[1/1] RUN x")
    vertex += wire.field_message(5, wire.encode_timestamp(100.0))
    trace = BuildTrace()
    trace.feed(decode_status(wire.field_message(1, vertex)))
    data = "héllo wörld\nsecond".encode()
    out: list[TraceEvent] = []
    for i in range(len(data)):
        log = wire.field_string(1, digest) + wire.field_varint(3, 1)
        log += wire.field_bytes(4, data[i : i + 1])
        out += trace.feed(decode_status(wire.field_message(3, log)))
    out += trace.close()
    assert logs(out) == ["héllo wörld", "second"]


def test_a_step_that_runs_again_is_announced_again() -> None:
    digest = "sha256:" + "d" * 64

    def vertex(started: float, completed: float | None) -> StatusResponse:
        body = wire.field_string(1, digest) + wire.field_string(3, "[internal] load x")
        body += wire.field_message(5, wire.encode_timestamp(started))
        if completed is not None:
            body += wire.field_message(6, wire.encode_timestamp(completed))
        return decode_status(wire.field_message(1, body))

    trace = BuildTrace()
    out = trace.feed(vertex(1.0, None)) + trace.feed(vertex(1.0, 2.0))
    out += trace.feed(vertex(1.0, 2.0))  # the same completion again: nothing new
    out += trace.feed(vertex(3.0, None)) + trace.feed(vertex(3.0, 3.5))
    assert [type(e).__name__ for e in out] == [
        "StepStarted",
        "StepFinished",
        "StepStarted",
        "StepFinished",
    ]
    assert {e.index for e in out if isinstance(e, StepStarted)} == {1}
    last = out[-1]
    assert isinstance(last, StepFinished) and last.seconds == pytest.approx(0.5)


# ---------------------------------------------------------------- reading a whole build


@pytest.mark.parametrize("name", ["cached", "fresh", "multistage", "hostile", "cache_mount"])
def test_a_successful_build_returns_the_engines_image_id(name: str) -> None:
    recorded = chunks(name)
    expected = next(c["aux"]["ID"] for c in recorded if c.get("id") == "moby.image.id")
    seen: list[TraceEvent] = []
    assert read_trace_stream(iter(recorded), seen.append) == expected
    assert any(isinstance(e, StepFinished) for e in seen)


def test_a_failing_run_raises_a_build_error_with_its_output() -> None:
    seen: list[TraceEvent] = []
    with pytest.raises(BuildError) as caught:
        read_trace_stream(iter(chunks("failing")), seen.append)
    error = caught.value
    assert error.exit_code == ExitCode.BUILD
    assert error.message.startswith("build failed at [3/4] RUN echo line one")
    assert error.message.endswith(": exit code 3")
    assert error.details[-1] == "output 15" and len(error.details) == 12
    assert error.hint and "output" in error.hint
    assert any(isinstance(e, StepFinished) and e.error for e in seen)


def test_a_long_step_name_is_shortened_in_the_error() -> None:
    with pytest.raises(BuildError) as caught:
        read_trace_stream(iter(chunks("failing")))
    assert len(caught.value.message) < 160
    assert "..." in caught.value.message


def test_a_dockerfile_syntax_error_names_the_line() -> None:
    with pytest.raises(DockerfileError) as caught:
        read_trace_stream(iter(chunks("syntax_error")))
    assert caught.value.message == (
        "Dockerfile syntax error: dockerfile parse error line 2: unknown instruction: NOSUCH"
    )
    assert caught.value.exit_code == ExitCode.USAGE  # invalid input, as README's table says


def test_a_missing_base_image_says_which() -> None:
    with pytest.raises(BuildError) as caught:
        read_trace_stream(iter(chunks("missing_base")))
    assert caught.value.message.startswith(
        "base image shipit.local/no-such-image-for-fixtures:latest is not available: "
    )
    assert caught.value.hint and "log in" in caught.value.hint


def test_a_secret_mount_without_a_session_points_to_secret() -> None:
    with pytest.raises(BuildError) as caught:
        read_trace_stream(iter(chunks("secret_without_session")))
    assert caught.value.message.endswith(": no active sessions")
    assert caught.value.hint and "--secret" in caught.value.hint


def test_a_stream_without_an_image_id_is_a_build_error() -> None:
    recorded = [c for c in chunks("cached") if c.get("id") != "moby.image.id"]
    with pytest.raises(BuildError, match="without producing an image"):
        read_trace_stream(iter(recorded))


def test_an_unavailable_cache_source_is_reported_but_does_not_fail_the_build() -> None:
    recorded = chunks("cache_from_unavailable")
    trace = BuildTrace()
    assert read_trace_stream(iter(recorded), trace=trace).startswith("sha256:")
    assert trace.failed is None
    [(reference, error)] = trace.unavailable_caches
    assert reference == "127.0.0.1:9/shipit/none:latest"
    assert "connection refused" in error


def test_the_engine_2010_sends_no_warning_for_an_unused_build_arg() -> None:
    # Recorded with --build-arg PYTHON_IMAG=typo: BuildKit 0.8 says nothing, so the
    # caller has to compare build args with the Dockerfile's ARGs itself.
    _, trace = events("warnings")
    assert trace.warnings == []
    assert trace.failed is None


# ---------------------------------------------------------------- text helpers


def test_plain_text_removes_escapes_and_controls_but_keeps_brackets() -> None:
    assert plain_text("\x1b[91mred\x1b[0m [bold]x\x07\ttab") == "red [bold]x\ttab"
    assert plain_text("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("executor failed running [/bin/sh -c exit 3]: exit code: 3", 3),
        ('process "/bin/sh -c false" did not complete successfully: exit code: 1', 1),
        ("no active sessions", None),
    ],
)
def test_exit_code_of(error: str, code: int | None) -> None:
    assert exit_code_of(error) == code


def test_plain_lines_match_dockers_plain_progress() -> None:
    assert plain_lines(StepStarted(3, "[builder 2/5] RUN make")) == ["#3 [builder 2/5] RUN make"]
    assert plain_lines(StepLog(3, "x", "hello", 1, 0.1234)) == ["#3 0.123 hello"]
    assert plain_lines(StepFinished(3, "x", seconds=1.26)) == ["#3 DONE 1.3s"]
    assert plain_lines(StepFinished(3, "x", cached=True, seconds=0.0)) == ["#3 CACHED"]
    assert plain_lines(StepFinished(3, "x", error="boom: context canceled")) == ["#3 CANCELED"]
    assert plain_lines(StepFinished(3, "x", error="exit code: 2")) == ["#3 ERROR: exit code: 2"]
    assert plain_lines(BuildWarning("unused", "[1/2] FROM x")) == ["warning: unused ([1/2] FROM x)"]


@pytest.mark.parametrize(
    ("name", "internal"),
    [
        ("[internal] load remote build context", True),
        ("copy /context /", True),
        ("exporting to image", True),
        ("importing cache manifest from x:1", True),
        ("[builder 2/5] RUN make", False),
        ("[1/4] FROM shipit.local/busybox:latest", False),
    ],
)
def test_internal_steps_are_told_from_dockerfile_steps(name: str, internal: bool) -> None:
    assert is_internal(name) is internal


def test_an_archive_read_as_a_dockerfile_is_explained() -> None:
    message = (
        "failed to solve with frontend dockerfile.v0: failed to create LLB definition: "
        "dockerfile parse error line 1: unknown instruction: ././@LONGLINK"
    )
    error = read_trace_error([{"error": message, "errorDetail": {"message": message}}])
    assert error.message.startswith("the engine read the build context as a Dockerfile")


def read_trace_error(recorded: list[dict[str, Any]]) -> BuildError:
    with pytest.raises(BuildError) as caught:
        read_trace_stream(iter(recorded))
    return caught.value
