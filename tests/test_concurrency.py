"""services.concurrency: jobs side by side, one job in the background, and jobs that let
others lead."""

from __future__ import annotations

import threading
import time

import pytest

from shipit.errors import RegistryError
from shipit.services.concurrency import Background, HeadStart, run_concurrently


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


def test_followers_start_once_every_leader_is_under_way() -> None:
    order = HeadStart(["arm64", "s390x"], limit=5.0)
    assert order.leads("arm64") and not order.leads("amd64")
    events: list[str] = []
    follower = threading.Thread(target=lambda: (order.wait(), events.append("amd64 started")))
    follower.start()
    time.sleep(0.05)
    order.under_way("amd64")  # a follower's own signal changes nothing
    order.under_way("arm64")
    time.sleep(0.05)
    assert events == []  # s390x is not under way yet
    events.append("s390x under way")
    order.under_way("s390x")
    follower.join(5)
    assert events == ["s390x under way", "amd64 started"]


def test_followers_wait_no_longer_than_the_limit_and_without_leaders_not_at_all() -> None:
    started = time.monotonic()
    HeadStart(["arm64"], limit=0.2).wait()
    assert 0.15 < time.monotonic() - started < 2.0
    started = time.monotonic()
    HeadStart([], limit=30.0).wait()
    assert time.monotonic() - started < 0.1
