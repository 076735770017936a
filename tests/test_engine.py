"""The engine boundary: stream chunks become events, results and shipit errors."""

from __future__ import annotations

import pytest

from shipit.adapters.engine.client import read_build_stream, read_push_stream
from shipit.errors import AuthError, BuildError, DockerfileError, RegistryError
from shipit.model import BuildOutput, BuildStep, Event, PushProgress

OK_BUILD = [
    {"stream": "Step 1/2 : FROM base\n"},
    {"stream": " ---> 1234\n"},
    {"stream": "Step 2/2 : RUN make\n"},
    {"stream": "compiling\nlinking\n"},
    {"aux": {"ID": "sha256:" + "a" * 64}},
    {"stream": "Successfully built aaaaaaaaaaaa\n"},
]


def test_build_stream_returns_the_image_id_and_emits_steps() -> None:
    events: list[Event] = []
    assert read_build_stream(iter(OK_BUILD), events.append) == "sha256:" + "a" * 64
    assert BuildStep("Step 2/2 : RUN make") in events
    assert BuildOutput("linking") in events


def test_build_fails_when_stream_reports_error() -> None:
    chunks = [
        *OK_BUILD[:4],
        {"stream": "make: *** [all] Error 2\n"},
        {
            "errorDetail": {
                "code": 2,
                "message": "The command '/bin/sh -c make' returned a non-zero code: 2",
            },
            "error": "The command '/bin/sh -c make' returned a non-zero code: 2",
        },
    ]
    with pytest.raises(BuildError) as info:
        read_build_stream(iter(chunks))
    err = info.value
    assert err.exit_code == 5
    assert "Step 2/2 : RUN make" in err.message
    assert "returned a non-zero code: 2" in err.message
    assert err.details[-1] == "make: *** [all] Error 2"


def test_build_error_for_dockerfile_syntax() -> None:
    chunks = [{"error": "dockerfile parse error line 3: unknown instruction: RUNN"}]
    with pytest.raises(DockerfileError, match=r"Dockerfile syntax error: .*RUNN") as info:
        read_build_stream(iter(chunks))
    assert info.value.exit_code == 2  # invalid input: nothing was built


def test_build_error_for_missing_base_image_has_a_hint() -> None:
    chunks = [
        {"stream": "Step 1/3 : FROM python:3.12-slim AS builder\n"},
        {"errorDetail": {"message": "pull access denied for python, repository does not exist"}},
    ]
    with pytest.raises(BuildError) as info:
        read_build_stream(iter(chunks))
    assert info.value.hint and "base image" in info.value.hint


def test_build_without_an_image_id_fails() -> None:
    with pytest.raises(BuildError, match="without producing an image"):
        read_build_stream(iter([{"stream": "Step 1/1 : FROM x\n"}]))


PUSH_OK = [
    {"status": "The push refers to repository [localhost:5000/app]"},
    {"status": "Preparing", "id": "abc", "progressDetail": {}},
    {"status": "Pushing", "id": "abc", "progressDetail": {"current": 10, "total": 20}},
    {"status": "Pushed", "id": "abc", "progressDetail": {}},
    {"status": "latest: digest: sha256:" + "b" * 64 + " size: 528"},
    {"aux": {"Tag": "latest", "Digest": "sha256:" + "b" * 64, "Size": 528}},
]


def test_push_stream_returns_digest_and_layer_progress() -> None:
    events: list[Event] = []
    assert read_push_stream(iter(PUSH_OK), events.append) == "sha256:" + "b" * 64
    assert PushProgress("abc", "Pushing", 10, 20) in events


def test_push_digest_from_status_line_when_no_aux() -> None:
    assert read_push_stream(iter(PUSH_OK[:-1])) == "sha256:" + "b" * 64


def test_push_fails_when_stream_reports_error() -> None:
    chunks = [
        *PUSH_OK[:3],
        {
            "errorDetail": {"message": "received unexpected HTTP status: 503 Service Unavailable"},
            "error": "x",
        },
    ]
    with pytest.raises(RegistryError) as info:
        read_push_stream(iter(chunks))
    assert info.value.exit_code == 6
    assert info.value.transient


def test_push_auth_error_is_exit_3() -> None:
    chunks = [{"errorDetail": {"message": "unauthorized: authentication required"}, "error": "u"}]
    with pytest.raises(AuthError) as info:
        read_push_stream(iter(chunks))
    assert info.value.exit_code == 3


def test_push_without_digest_fails() -> None:
    with pytest.raises(RegistryError, match="without the registry reporting a digest"):
        read_push_stream(iter(PUSH_OK[:4]))
