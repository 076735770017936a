"""Bounded retries with exponential backoff and jitter, for transient registry failures only."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from shipit.errors import RegistryError

T = TypeVar("T")

DEFAULT_ATTEMPTS = 5
DEFAULT_TOTAL_SECONDS = 300.0
DEFAULT_STALL_SECONDS = 120.0
DEFAULT_BASE_DELAY = 1.0
DEFAULT_MAX_DELAY = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: at most `attempts` tries within `total_seconds` (defaults in the README)."""

    attempts: int = DEFAULT_ATTEMPTS
    total_seconds: float = DEFAULT_TOTAL_SECONDS
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a retry policy needs at least 1 attempt")
        if self.total_seconds <= 0 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("retry times must be positive, with max_delay >= base_delay")

    def delay(self, failures: int, error: RegistryError, rng: Callable[[], float]) -> float:
        """Backoff for the n-th failure: base*2^(n-1) capped, half jittered, at least Retry-After."""
        backoff = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        delay = backoff * (0.5 + rng() / 2)
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return delay


RetryHook = Callable[[int, RegistryError, float], None]


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    on_retry: RetryHook | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
) -> T:
    """Call `fn`; retry transient RegistryErrors within the policy's bounds; re-raise the rest.

    Before each retry `on_retry(attempt, error, delay)` is called, so the caller can report
    why. The last error is re-raised with how many attempts were made and how long they took.
    """
    started = clock()
    failures = 0
    while True:
        try:
            return fn()
        except RegistryError as error:
            if not error.transient:
                raise
            failures += 1
            delay = policy.delay(failures, error, rng)
            spent = clock() - started
            if failures >= policy.attempts or spent + delay > policy.total_seconds:
                asked = (
                    f"; the registry asked to wait {error.retry_after:g}s"
                    if error.retry_after is not None
                    and failures < policy.attempts
                    and spent + error.retry_after > policy.total_seconds
                    else ""
                )
                error.message = (
                    f"{error.message} (gave up after {failures} attempt"
                    f"{'s' if failures != 1 else ''} in {spent:.0f}s{asked})"
                )
                raise
            if on_retry is not None:
                on_retry(failures, error, delay)
            sleep(delay)
