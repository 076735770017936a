"""Run the real `shipit` entry point in this process against the fake engine and registries.

For tests that need a real terminal: they start `python -m tests.support.fake_cli SCENARIO.json`
with stderr on a pseudo-terminal. The scenario names the arguments and what the fake engine
streams; the working directory is the project to use.

Scenario keys: ``argv`` (list), ``built`` (add the image `shipit build` would leave),
``build_chunks`` (list of stream chunks), ``push_chunks`` / ``push_errors``
({reference: [chunks]}), ``chunk_delay`` (seconds between push chunks, so a live view draws), ``env`` (variables to set),
``images`` ({reference: image id} the fake engine already has).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _slow(chunks: Iterator[dict[str, Any]], delay: float) -> Iterator[dict[str, Any]]:
    for chunk in chunks:
        time.sleep(delay)
        yield chunk


def install(scenario: dict[str, Any], clients: Any) -> Any:
    """The fake engine and registries, put in through the wiring the commands use."""
    from shipit.adapters.engine.client import Engine
    from tests.fakes import FakeAPI, FakeRegistries, add_built_image

    api = FakeAPI()
    clients.engine = lambda env, timeout=60.0: Engine(api)
    FakeRegistries(api).install()
    if scenario.get("built"):
        add_built_image(api, Path.cwd())
    for reference, image_id in (scenario.get("images") or {}).items():
        api.add_image(reference, image_id)
    if scenario.get("build_chunks") is not None:
        api.build_chunks = scenario["build_chunks"]
    api.push_chunks.update(scenario.get("push_chunks") or {})
    api.push_errors.update(scenario.get("push_errors") or {})
    delay = float(scenario.get("chunk_delay") or 0)
    if delay:
        push = api.push

        def slow_push(*args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
            return _slow(push(*args, **kwargs), delay)

        api.push = slow_push  # type: ignore[method-assign]
    return api


def main() -> None:
    scenario = json.loads(Path(sys.argv[1]).read_text())
    monkeypatch = pytest.MonkeyPatch()
    for key, value in (scenario.get("env") or {}).items():
        monkeypatch.setenv(key, value)
    from shipit.cli import main as shipit_main
    from shipit.cli import wiring

    with wiring.using(wiring.Clients()) as clients:
        install(scenario, clients)
        sys.argv = ["shipit", *scenario["argv"]]
        shipit_main()


if __name__ == "__main__":
    main()
