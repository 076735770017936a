"""`shipit login`: check credentials with each registry and record them like `docker login`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from shipit.adapters import dockerconfig
from shipit.adapters.engine.client import Engine
from shipit.errors import AuthError
from shipit.output.reporter import Reporter
from shipit.services.registries import Destination
from shipit.services.retry import RetryPolicy, call_with_retry


def login_all(
    destinations: Sequence[Destination],
    engine: Engine,
    reporter: Reporter,
    env: Mapping[str, str],
    *,
    retry: RetryPolicy | None = None,
) -> list[dict[str, str]]:
    """Log in to every destination; return where each login was recorded (never the secret)."""
    results = []
    for destination in destinations:
        auth = destination.authenticate(reporter)
        if auth is None:
            raise AuthError(
                f"no credentials for {destination.host}: set SHIPIT_REGISTRY_USERNAME and "
                "SHIPIT_REGISTRY_PASSWORD, or pass --username with --password-stdin"
            )
        call_with_retry(
            partial(engine.login, auth),
            retry or RetryPolicy(),
            on_retry=partial(_report_retry, reporter, destination.label),
        )
        stored = dockerconfig.store(
            auth.registry or destination.host, auth.username, auth.password, env
        )
        reporter.success(f"logged in to {destination.host} as {auth.username} (saved in {stored})")
        results.append(
            {"registry": destination.label, "server": destination.host, "stored_in": stored}
        )
    return results


def _report_retry(reporter: Reporter, label: str, attempt: int, error: Any, delay: float) -> None:
    reporter.warn(f"{label}: {error.kind} ({error.message}); retry {attempt} in {delay:.1f}s")
