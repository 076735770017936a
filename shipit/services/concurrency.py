"""Jobs run side by side in threads (pushes to several registries, several platforms' builds)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


def run_concurrently(jobs: list[Callable[[], T]], *, name: str = "shipit-job") -> list[T]:
    """Run jobs in threads, results in order; when any fails, raise the first failure after
    all have ended.

    Daemon threads and a polling join keep Ctrl-C/SIGTERM deliverable to the main thread:
    an interrupted run exits at once instead of waiting for jobs that hang. The threads are
    named `name`-0, `name`-1, ...
    """
    if len(jobs) == 1:
        return [jobs[0]()]
    results: list[T | None] = [None] * len(jobs)
    errors: list[BaseException | None] = [None] * len(jobs)

    def run(index: int) -> None:
        try:
            results[index] = jobs[index]()
        except BaseException as exc:
            errors[index] = exc

    threads = [
        threading.Thread(target=run, args=(i,), daemon=True, name=f"{name}-{i}")
        for i in range(len(jobs))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    for error in errors:
        if error is not None:
            raise error
    return [r for r in results if r is not None]


class Background(Generic[T]):
    """One job started in a daemon thread at once; `wait()` and `result()` wait for it.

    For work that only gates a later step (a registry check while platforms build): the
    caller goes on, and asks for the answer when it needs it.
    """

    def __init__(self, job: Callable[[], T], *, name: str = "shipit-background") -> None:
        self._job = job
        self._done = threading.Event()
        self._result: T | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, daemon=True, name=name).start()

    def _run(self) -> None:
        try:
            self._result = self._job()
        except BaseException as exc:
            self._error = exc
        finally:
            self._done.set()

    def wait(self) -> bool:
        """Wait for the job; True when it succeeded."""
        while not self._done.wait(0.2):  # a polling wait keeps Ctrl-C deliverable
            pass
        return self._error is None

    def result(self) -> T:
        """The job's result, or its failure raised here."""
        if not self.wait():
            assert self._error is not None
            raise self._error
        return self._result  # type: ignore[return-value]


class HeadStart:
    """Lets the jobs of `leaders` get under way before the others start.

    Each leader calls `under_way(key)` once it is running (and again, harmlessly, when it
    ends, so a leader that fails early holds nobody); `wait()` holds a follower until every
    leader is under way, never longer than `limit` seconds.
    """

    def __init__(self, leaders: Iterable[Hashable], *, limit: float) -> None:
        self._leaders = {key: threading.Event() for key in leaders}
        self.limit = limit

    def leads(self, key: Hashable) -> bool:
        return key in self._leaders

    def under_way(self, key: Hashable) -> None:
        event = self._leaders.get(key)
        if event is not None:
            event.set()

    def wait(self) -> None:
        deadline = time.monotonic() + self.limit
        for event in self._leaders.values():
            event.wait(max(0.0, deadline - time.monotonic()))
