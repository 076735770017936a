"""One BuildKit build through the adapter: engine support, network names, request and stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipit.adapters.engine.buildkit.build import buildkit_support, network_mode, run_build
from shipit.adapters.engine.buildkit.trace import StepFinished, TraceEvent
from shipit.adapters.engine.buildkit.transport import BuildRequest
from shipit.adapters.engine.client import Engine
from shipit.errors import BuildError

FIXTURES = Path(__file__).parent / "fixtures" / "trace"


class FakeAPI:
    """docker-py's plumbing that post_build uses, answering with a recorded stream."""

    base_url = "http+docker://localhost"

    def __init__(self, fixture: str):
        lines = (FIXTURES / f"{fixture}.jsonl").read_text().splitlines()
        self.chunks = [json.loads(line) for line in lines]
        self.posted: list[dict[str, Any]] = []

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _post(self, url: str, **kwargs: Any) -> object:
        self.posted.append({"url": url, **kwargs})
        return object()

    def _raise_for_status(self, response: object) -> None:
        return None

    def _stream_helper(self, response: object, decode: bool) -> Iterator[dict[str, Any]]:
        yield from self.chunks


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        ({"ApiVersion": "1.41", "Os": "linux"}, True),
        ({"ApiVersion": "1.39", "Os": "linux"}, True),
        ({"ApiVersion": "1.38", "Os": "linux"}, False),
        ({"ApiVersion": "1.41", "Os": "windows"}, False),
        ({}, False),
    ],
)
def test_buildkit_support_needs_api_1_39_on_linux(version: dict[str, str], supported: bool) -> None:
    reason = buildkit_support(version)
    assert (reason is None) is supported
    if reason is not None:
        assert "BuildKit" in reason


@pytest.mark.parametrize(
    ("given", "sent"),
    [("bridge", "default"), ("host", "host"), ("none", "none"), (None, None), ("", None)],
)
def test_bridge_is_sent_as_default(given: str | None, sent: str | None) -> None:
    assert network_mode(given) == sent


def test_run_build_posts_version_2_and_returns_the_image_id() -> None:
    api = FakeAPI("cached")
    seen: list[TraceEvent] = []
    request = BuildRequest(tags=["app:1"], buildargs={"A": "1"}, networkmode="default")
    image_id = run_build(Engine(api), request, b"tar", on_event=seen.append)
    assert image_id.startswith("sha256:2f71048e")
    params = api.posted[0]["params"]
    assert params["version"] == "2" and params["t"] == ["app:1"]
    assert params["networkmode"] == "default" and json.loads(params["buildargs"]) == {"A": "1"}
    assert "session" not in params
    assert api.posted[0]["headers"] == {"Content-Type": "application/x-tar"}
    assert any(isinstance(e, StepFinished) and e.cached for e in seen)


def test_run_build_raises_the_failing_steps_error() -> None:
    with pytest.raises(BuildError) as caught:
        run_build(Engine(FakeAPI("failing")), BuildRequest(tags=["app:1"]), b"tar")
    assert caught.value.exit_code == 5
    assert caught.value.details[-1] == "output 15"
