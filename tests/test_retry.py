"""Bounded retries: exponential backoff with jitter, Retry-After as a floor, attempt and time bounds.

The clock, sleep and random source are injected, so nothing here waits.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shipit.errors import AuthError, RegistryError
from shipit.services.retry import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BASE_DELAY,
    DEFAULT_MAX_DELAY,
    DEFAULT_STALL_SECONDS,
    DEFAULT_TOTAL_SECONDS,
    RetryPolicy,
    call_with_retry,
)


def transient(kind: str = "server", retry_after: float | None = None) -> RegistryError:
    return RegistryError(f"{kind} failure", transient=True, kind=kind, retry_after=retry_after)


class FakeTime:
    """A clock that only moves when slept on (or when told to)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(errors: list[BaseException], result: str = "ok") -> Callable[[], str]:
    """A call that raises each of `errors` in turn, then returns `result`."""
    pending = list(errors)
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if pending:
            raise pending.pop(0)
        return result

    call.calls = calls  # type: ignore[attr-defined]
    return call


def run(
    fn: Callable[[], str],
    policy: RetryPolicy,
    time: FakeTime,
    *,
    rng: float = 1.0,
    retries: list[tuple[int, RegistryError, float]] | None = None,
) -> str:
    def on_retry(attempt: int, error: RegistryError, delay: float) -> None:
        if retries is not None:
            retries.append((attempt, error, delay))

    return call_with_retry(
        fn, policy, on_retry=on_retry, sleep=time.sleep, clock=time.clock, rng=lambda: rng
    )


def test_defaults_are_the_documented_ones() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.total_seconds) == (5, 300.0)
    assert (policy.base_delay, policy.max_delay) == (1.0, 30.0)
    assert (DEFAULT_ATTEMPTS, DEFAULT_TOTAL_SECONDS, DEFAULT_STALL_SECONDS) == (5, 300.0, 120.0)
    assert (DEFAULT_BASE_DELAY, DEFAULT_MAX_DELAY) == (1.0, 30.0)


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=30.0)
    delays = [policy.delay(n, transient(), lambda: 1.0) for n in range(1, 9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


@pytest.mark.parametrize("failures", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("draw", [0.0, 0.25, 0.5, 0.999999, 1.0])
def test_jitter_keeps_each_delay_between_half_and_all_of_the_backoff(
    failures: int, draw: float
) -> None:
    policy = RetryPolicy(attempts=10)
    backoff = min(30.0, 2.0 ** (failures - 1))
    delay = policy.delay(failures, transient(), lambda: draw)
    assert 0.5 * backoff <= delay <= backoff
    assert delay == pytest.approx(backoff * (0.5 + draw / 2))


def test_jitter_spreads_real_random_delays() -> None:
    import random

    rng = random.Random(4)
    policy = RetryPolicy()
    delays = [policy.delay(3, transient(), rng.random) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert max(delays) - min(delays) > 1.0  # not all the same: jittered


def test_retry_after_is_a_floor_under_the_backoff() -> None:
    policy = RetryPolicy()
    assert policy.delay(1, transient("throttled", retry_after=7), lambda: 0.0) == 7.0
    # A Retry-After shorter than the backoff does not shorten it.
    assert policy.delay(4, transient("throttled", retry_after=1), lambda: 1.0) == 8.0
    # Even above the cap: the registry asked for it.
    assert policy.delay(1, transient("throttled", retry_after=45), lambda: 1.0) == 45.0


def test_transient_failures_are_retried_until_success() -> None:
    time = FakeTime()
    fn = failing([transient(), transient("unreachable")])
    retries: list[tuple[int, RegistryError, float]] = []
    assert run(fn, RetryPolicy(), time, retries=retries) == "ok"
    assert len(fn.calls) == 3  # type: ignore[attr-defined]
    assert time.sleeps == [1.0, 2.0]
    assert [(a, e.kind, d) for a, e, d in retries] == [(1, "server", 1.0), (2, "unreachable", 2.0)]


def test_each_retry_is_reported_with_its_reason_before_the_wait() -> None:
    time = FakeTime()
    seen: list[tuple[int, str, float, int]] = []
    error = transient("throttled", retry_after=3)

    def on_retry(attempt: int, err: RegistryError, delay: float) -> None:
        seen.append((attempt, err.message, delay, len(time.sleeps)))

    call_with_retry(
        failing([error]),
        RetryPolicy(),
        on_retry=on_retry,
        sleep=time.sleep,
        clock=time.clock,
        rng=lambda: 1.0,
    )
    assert seen == [(1, "throttled failure", 3.0, 0)]
    assert time.sleeps == [3.0]


def test_attempts_are_bounded() -> None:
    time = FakeTime()
    fn = failing([transient() for _ in range(10)])
    with pytest.raises(RegistryError) as raised:
        run(fn, RetryPolicy(attempts=3), time)
    assert len(fn.calls) == 3  # type: ignore[attr-defined]
    assert time.sleeps == [1.0, 2.0]
    assert "gave up after 3 attempts" in raised.value.message


def test_one_attempt_means_no_retry() -> None:
    time = FakeTime()
    fn = failing([transient()])
    with pytest.raises(RegistryError) as raised:
        run(fn, RetryPolicy(attempts=1), time)
    assert len(fn.calls) == 1  # type: ignore[attr-defined]
    assert time.sleeps == []
    assert "gave up after 1 attempt in 0s" in raised.value.message


def test_total_time_counts_the_calls_themselves() -> None:
    time = FakeTime()

    def slow() -> str:
        time.now += 8.0  # each attempt takes 8 s
        raise transient("timeout")

    with pytest.raises(RegistryError) as raised:
        call_with_retry(
            slow,
            RetryPolicy(attempts=10, total_seconds=20),
            sleep=time.sleep,
            clock=time.clock,
            rng=lambda: 1.0,
        )
    # 8 s, wait 1 s, 8 s, wait 2 s (ends at 19 s, within 20), 8 s; a 4 s wait would end
    # after 20 s: give up. A retry starts only while the total time allows it.
    assert time.sleeps == [1.0, 2.0]
    assert time.now - 1000.0 == 27.0
    assert "gave up after 3 attempts in 27s" in raised.value.message


def test_no_retry_is_started_that_would_end_after_the_total_time() -> None:
    time = FakeTime()
    fn = failing([transient("throttled", retry_after=3600)])
    retries: list[tuple[int, RegistryError, float]] = []
    with pytest.raises(RegistryError) as raised:
        run(fn, RetryPolicy(total_seconds=300), time, retries=retries)
    assert retries == [] and time.sleeps == []
    assert "the registry asked to wait 3600s" in raised.value.message


def test_time_bound_never_exceeded_with_many_attempts() -> None:
    time = FakeTime()
    fn = failing([transient() for _ in range(100)])
    with pytest.raises(RegistryError):
        run(fn, RetryPolicy(attempts=100, total_seconds=60), time)
    assert time.now - 1000.0 <= 60.0
    assert sum(time.sleeps) <= 60.0


@pytest.mark.parametrize(
    "error",
    [
        RegistryError("manifest invalid", kind="invalid"),
        RegistryError("refusing to overwrite", kind="overwrite_refused"),
        AuthError("unauthorized"),
        ValueError("a bug"),
    ],
    ids=["permanent", "overwrite", "auth", "bug"],
)
def test_permanent_errors_and_bugs_are_not_retried(error: Exception) -> None:
    time = FakeTime()
    fn = failing([error])
    retries: list[tuple[int, RegistryError, float]] = []
    with pytest.raises(type(error)) as raised:
        run(fn, RetryPolicy(), time, retries=retries)
    assert raised.value is error
    assert len(fn.calls) == 1  # type: ignore[attr-defined]
    assert retries == [] and time.sleeps == []
    assert "gave up" not in str(error)


def test_a_permanent_error_after_transient_ones_stops_at_once() -> None:
    time = FakeTime()
    fn = failing([transient(), RegistryError("name unknown", kind="missing_repository")])
    with pytest.raises(RegistryError) as raised:
        run(fn, RetryPolicy(), time)
    assert raised.value.kind == "missing_repository"
    assert len(fn.calls) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"total_seconds": 0},
        {"base_delay": -1},
        {"base_delay": 5, "max_delay": 1},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the engine's own retries


def test_engine_upload_retries_are_reported_and_cut_at_the_retry_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine retries layer uploads by itself, streaming only "Retrying in N seconds":
    shipit reports each retry once and ends a push still retrying after --retry-timeout."""
    import io

    from shipit.model import Event, PushProgress, PushStatus
    from shipit.output.reporter import OutputMode, Reporter
    from shipit.services import push as pusher
    from shipit.services.registries import RegistryOptions, make_destinations

    now = [100.0]
    monkeypatch.setattr(pusher.time, "monotonic", lambda: now[0])
    err = io.StringIO()
    reporter = Reporter(OutputMode(), stdout=io.StringIO(), stderr=err)
    [destination] = make_destinations(RegistryOptions(registries=("127.0.0.1:5000",)), {})
    seen: list[Event] = []
    settings = pusher.PushSettings(retry=RetryPolicy(total_seconds=20))
    events = pusher._engine_events(seen.append, destination, reporter, settings)

    def retrying(seconds: int, layer: str = "abc") -> PushProgress:
        unit = "second" if seconds == 1 else "seconds"
        return PushProgress(layer=layer, status=f"Retrying in {seconds} {unit}")

    stream: list[Event] = [
        PushStatus("The push refers to repository [127.0.0.1:5000/app]"),
        PushProgress(layer="abc", status="Preparing"),
        retrying(5),
        retrying(4),
        retrying(1),
        retrying(10),  # the engine's next retry of the same layer
        retrying(5, layer="def"),
    ]
    for event in stream:
        events(event)
        now[0] += 1
    assert seen == stream
    warnings = err.getvalue().splitlines()
    assert warnings == [
        "warning: 127.0.0.1:5000: the registry failed the upload of layer abc; "
        "the engine retries it in 5s",
        "warning: 127.0.0.1:5000: the registry failed the upload of layer abc; "
        "the engine retries it in 10s",
        "warning: 127.0.0.1:5000: the registry failed the upload of layer def; "
        "the engine retries it in 5s",
    ]
    # Past the total time, a push that makes progress goes on...
    now[0] = 100.0 + 25
    events(PushProgress(layer="abc", status="Pushing", current=10, total=100))
    events(PushProgress(layer="abc", status="Pushed"))
    # ...and one that is still retrying ends, as a transient timeout (so the retry loop
    # reports how many attempts were made and gives up: its time is spent too).
    with pytest.raises(RegistryError) as raised:
        events(retrying(9, layer="def"))
    assert (raised.value.kind, raised.value.transient) == ("timeout", True)
    assert "--retry-timeout (20s) ran out" in raised.value.message
