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


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: at most `attempts` tries within `total_seconds` (defaults in the README)."""

    attempts: int = DEFAULT_ATTEMPTS
    total_seconds: float = DEFAULT_TOTAL_SECONDS
    base_delay: float = 1.0
    max_delay: float = 30.0

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
    """Call `fn`; retry transient RegistryErrors within the policy's bounds; re-raise the rest."""
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
                error.message = (
                    f"{error.message} (gave up after {failures} attempt"
                    f"{'s' if failures != 1 else ''} in {spent:.0f}s)"
                )
                raise
            if on_retry is not None:
                on_retry(failures, error, delay)
            sleep(delay)
