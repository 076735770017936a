"""services.concurrency: jobs side by side, and one job in the background."""

from __future__ import annotations

import threading

import pytest

from shipit.errors import RegistryError
from shipit.services.concurrency import Background, run_concurrently


def test_background_runs_at_once_and_gives_its_result_when_asked() -> None:
    started = threading.Event()
    release = threading.Event()

    def job() -> int:
        started.set()
        release.wait(5)
        return 42

    background = Background(job)
    assert started.wait(5), "the job did not start before its result was asked for"
    release.set()
    assert background.wait() is True
    assert background.result() == 42


def test_background_failure_is_raised_by_result_not_by_wait() -> None:
    def job() -> int:
        raise RegistryError("127.0.0.1:5000: cannot talk to it", kind="connection")

    background = Background(job)
    assert background.wait() is False
    with pytest.raises(RegistryError, match="cannot talk"):
        background.result()
    with pytest.raises(RegistryError):  # asked again: the same failure, not a stale None
        background.result()


def test_run_concurrently_keeps_order_and_raises_the_first_failure_after_all_ended() -> None:
    ended: list[str] = []

    def ok(name: str) -> str:
        ended.append(name)
        return name

    def bad() -> str:
        raise RegistryError("second failed")

    assert run_concurrently([lambda: ok("a"), lambda: ok("b")]) == ["a", "b"]
    with pytest.raises(RegistryError, match="second failed"):
        run_concurrently([lambda: ok("c"), bad, lambda: ok("d")])
    assert {"c", "d"} <= set(ended)
