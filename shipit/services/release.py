"""`shipit release`: build, optionally smoke-test, then push what was built (build + push)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shipit.adapters.engine.client import Engine
from shipit.output.reporter import Reporter
from shipit.services.build import BuildResult, BuildSettings, build_image
from shipit.services.push import Pushed, PushSettings, RegistryClientFactory, push_image
from shipit.services.registries import Destination


@dataclass(frozen=True)
class SmokeCheck:
    """The smoke test a release runs between build and push."""

    path: str
    timeout: float


@dataclass(frozen=True)
class Released:
    """What a release built (None for a dry run) and pushed."""

    built: BuildResult | None
    pushed: list[Pushed]

    def as_json(self, *, dry_run: bool) -> dict[str, Any]:
        return {
            "build": self.built.as_json() if self.built else None,
            "pushed": [p.as_json() for p in self.pushed],
            "dry_run": dry_run,
        }


def release_image(
    settings: BuildSettings,
    destinations: Sequence[Destination],
    engine: Engine,
    reporter: Reporter,
    push_settings: PushSettings,
    *,
    registry_client: RegistryClientFactory,
    smoke: SmokeCheck | None = None,
) -> Released:
    """Build the image, smoke-test it when asked, push every tag; a dry run only plans the push."""
    if push_settings.dry_run:
        reporter.info(f"would build {settings.context} as " + ", ".join(settings.image.references))
        pushed = push_image(
            settings.image,
            destinations,
            engine,
            reporter,
            push_settings,
            built=False,
            registry_client=registry_client,
        )
        return Released(None, pushed)
    with reporter.phase("Build"):
        built = build_image(settings, engine, reporter)
    if smoke is not None:
        from shipit.services.smoke import smoke_test

        with reporter.phase("Smoke test"):
            result = smoke_test(
                engine,
                reporter,
                settings.image.references[0],
                path=smoke.path,
                timeout=smoke.timeout,
            )
        reporter.info(f"healthy in {result.seconds_to_healthy:.1f}s")
    pushed = push_image(
        settings.image,
        destinations,
        engine,
        reporter,
        push_settings,
        registry_client=registry_client,
    )
    return Released(built, pushed)
