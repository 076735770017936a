"""What push, login and release share: destinations with the wiring's clients, push settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any


def wired_destinations(options: Any, env: Mapping[str, str]) -> list[Any]:
    """The --registry destinations (all validated first); ECR ones get the wiring's AWS clients."""
    from shipit.cli.wiring import clients
    from shipit.services.registries import make_destinations, make_ecr_registry

    return make_destinations(
        options, env, ecr_factory=partial(make_ecr_registry, aws=clients().aws)
    )


def push_settings(
    *,
    retries: int,
    retry_timeout: float,
    allow_overwrite: bool,
    dry_run: bool,
    stall_timeout: float,
    push_cache: bool,
    **_: Any,
) -> Any:
    """The push options as the push service takes them (other options are ignored)."""
    from shipit.services.push import PushSettings
    from shipit.services.retry import RetryPolicy

    return PushSettings(
        retry=RetryPolicy(attempts=retries, total_seconds=retry_timeout),
        allow_overwrite=allow_overwrite,
        dry_run=dry_run,
        stall_seconds=stall_timeout,
        push_cache=push_cache,
    )


def emit_references(reporter: Any, pushed: Sequence[Any]) -> None:
    """One line per pushed reference on stdout: NAME:TAG@DIGEST (or the reference alone)."""
    for p in pushed:
        reporter.emit(f"{p.reference}@{p.digest}" if p.digest else p.reference)
