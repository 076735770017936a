"""The multi-platform parts of `build`, `push` and `release`: their extra options, and the
one call each command makes when `--platform` lists several platforms (or a CI-matrix flag is
given). Each function returns None when the command's ordinary single-platform path applies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipit.cli.common import write_ci_outputs
from shipit.errors import UsageError

if TYPE_CHECKING:
    from shipit.adapters.engine.client import Engine
    from shipit.output.reporter import Reporter
    from shipit.services.build import BuildSettings, ImageSelection
    from shipit.services.multiplatform import MultiBuildResult, MultiPushResult
    from shipit.services.push import PushSettings
    from shipit.services.registries import Destination

PushPlatformOpt = Annotated[
    str | None,
    typer.Option(
        "--platform",
        envvar="SHIPIT_PLATFORM",
        help="Platforms of a multi-platform build (linux/amd64,linux/arm64): each is pushed, "
        "then every tag is published as one image index.",
    ),
]
PlatformOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--platform-only",
        help="CI matrix runner: push only this --platform's image (as TAG-linux-arm64), "
        "no index; a join job runs push --merge.",
    ),
]
MergeOpt = Annotated[
    bool,
    typer.Option(
        "--merge",
        help="CI matrix join: publish each tag as one index of the --platform images the "
        "runners pushed (TAG-linux-amd64, ...). Needs no engine.",
    ),
]


def multi_platforms(value: str | None) -> tuple[Any, ...]:
    """The platforms of a `--platform` value (empty when none is given)."""
    from shipit.platforms import parse_platforms

    return parse_platforms(value)


def build_for_platforms(
    settings: BuildSettings, engine: Engine, reporter: Reporter, env: dict[str, str]
) -> MultiBuildResult | None:
    """`shipit build` for two or more platforms, reported; for one, only the emulator check
    runs (and None lets the ordinary build go on)."""
    platforms = multi_platforms(settings.platform)
    if not platforms:
        return None  # the ordinary build: no multi-platform code to load
    from shipit.services.build import build_image
    from shipit.services.multiplatform import build_platforms, require_buildable

    if len(platforms) < 2:
        require_buildable(platforms, engine)
        return None
    result = build_platforms(settings, platforms, engine, reporter, build_image)
    references = [r for image in result.images for r in image.references]
    write_ci_outputs(env, result.name, references, [])
    if reporter.mode.json:
        reporter.emit_json(result.as_json())
        return result
    for image in result.images:
        reporter.success(
            f"built {result.name} {image.platform} {image.image_id[:19]} "
            f"({image.size_bytes / 1e6:.1f} MB)"
        )
        for reference in image.references:
            reporter.emit(reference)
    return result


def release_for_platforms(
    settings: BuildSettings,
    destinations: Sequence[Destination],
    engine: Engine,
    reporter: Reporter,
    push_settings: PushSettings,
    env: dict[str, str],
    *,
    registry_client: Callable[..., Any] | None = None,
    smoke: Any = None,
) -> bool:
    """`shipit release` for two or more platforms: build each, optionally smoke each, push each,
    publish the indexes. False when the ordinary single-platform release applies."""
    from shipit.adapters.oci import RegistryClient
    from shipit.services.build import build_image
    from shipit.services.multiplatform import push_platforms, release_platforms, require_buildable

    platforms = multi_platforms(settings.platform)
    if len(platforms) < 2:
        if platforms and not push_settings.dry_run:
            require_buildable(platforms, engine)
        return False
    built = None
    new_client = registry_client or RegistryClient
    if push_settings.dry_run:
        shown = ", ".join(str(p) for p in platforms)
        reporter.info(f"would build {settings.context} for {shown}")
    elif smoke is None:
        built, result = release_platforms(
            settings, platforms, destinations, engine, reporter, push_settings,
            build=build_image, registry_client=new_client,
        )  # fmt: skip
        report_push(result, settings.image, reporter, env, dry_run=False, build=built)
        return True
    else:  # a SmokeCheck: every platform's image is run (foreign ones under QEMU) before any push
        built = _build_and_smoke(settings, platforms, engine, reporter, smoke)
    result = push_platforms(
        settings.image,
        platforms,
        destinations,
        engine,
        reporter,
        push_settings,
        registry_client=new_client,
        built=built is not None,
    )
    report_push(result, settings.image, reporter, env, dry_run=push_settings.dry_run, build=built)
    return True


def _build_and_smoke(
    settings: BuildSettings,
    platforms: Sequence[Any],
    engine: Engine,
    reporter: Reporter,
    smoke: Any,
) -> Any:
    """Build every platform's image, then smoke-test each (a foreign one under QEMU)."""
    from shipit.services.build import build_image
    from shipit.services.multiplatform import build_platforms
    from shipit.services.smoke import smoke_test

    with reporter.phase("Build"):
        built = build_platforms(settings, platforms, engine, reporter, build_image)
    with reporter.phase("Smoke test"):
        for image in built.images:
            reference = image.references[0]
            healthy = smoke_test(
                engine, reporter, reference, path=smoke.path, timeout=smoke.timeout
            )
            reporter.info(f"{reference} healthy in {healthy.seconds_to_healthy:.1f}s")
    return built


def push_for_platforms(
    selection: ImageSelection,
    platform: str | None,
    destinations: Sequence[Destination],
    connect: Callable[[], Engine],
    reporter: Reporter,
    settings: PushSettings,
    *,
    platform_only: bool,
    merge: bool,
    registry_client: Callable[..., Any] | None = None,
) -> MultiPushResult | None:
    """`shipit push` of a multi-platform build, one CI-matrix runner's platform, or the join.

    `registry_client(host, auth, timeout=...)` makes the registry HTTP client (the wiring's)."""
    from shipit.adapters.oci import RegistryClient
    from shipit.services.multiplatform import merge_platforms, push_platforms

    new_client = registry_client or RegistryClient

    platforms = multi_platforms(platform)
    if platform_only and merge:
        raise UsageError("--platform-only and --merge exclude each other")
    if (platform_only or merge) and not platforms:
        flag = "--platform-only" if platform_only else "--merge"
        raise UsageError(f"{flag} needs --platform (e.g. --platform linux/arm64)")
    if merge:
        return merge_platforms(
            selection, platforms, destinations, reporter, settings, registry_client=new_client
        )
    if len(platforms) < 2 and not platform_only:
        if platforms and not settings.dry_run:
            # One platform: the ordinary push, of an image that must be that platform's.
            from shipit.services.multiplatform import require_platform_image

            require_platform_image(connect(), selection.references[0], platforms[0])
        return None
    return push_platforms(
        selection,
        platforms,
        destinations,
        connect(),
        reporter,
        settings,
        platform_only=platform_only,
        registry_client=new_client,
    )


def report_push(
    result: MultiPushResult,
    selection: ImageSelection,
    reporter: Reporter,
    env: dict[str, str],
    *,
    dry_run: bool,
    build: MultiBuildResult | None = None,
) -> None:
    """Print what landed: each tag's index (or, for one runner, its platform images)."""
    pushed = result.pushed or [p for _, p in result.platform_images]
    write_ci_outputs(env, selection.name, selection.references, pushed)
    if reporter.mode.json:
        payload: dict[str, Any] = {**result.as_json(), "dry_run": dry_run}
        if not result.pushed:
            payload["pushed"] = [
                {"platform": str(pl), **p.as_json()} for pl, p in result.platform_images
            ]
        if build is not None:
            payload = {"build": build.as_json(), **payload}
        reporter.emit_json(payload)
        return
    for p in pushed:
        reporter.emit(f"{p.reference}@{p.digest}" if p.digest else p.reference)


RemoteOpt = Annotated[
    bool,
    typer.Option(
        "--remote",
        help="Read IMAGE (HOST/REPOSITORY:TAG) from its registry: its digest and the platforms "
        "it holds.",
    ),
]
SmokePlatformOpt = Annotated[
    str | None,
    typer.Option(
        "--platform",
        help="Run this platform's image of a multi-platform build (e.g. linux/arm64; other "
        "architectures run under QEMU).",
    ),
]


def smoke_reference(engine: Engine, reference: str, platform: str | None) -> str:
    """The local image `smoke --platform` runs: NAME:TAG-<platform>, or NAME:TAG of it."""
    from shipit.services.multiplatform import platform_reference, require_buildable

    platforms = multi_platforms(platform)
    if not platforms:
        return reference
    if len(platforms) > 1:
        raise UsageError("smoke --platform takes one platform (e.g. linux/arm64)")
    require_buildable(platforms, engine)  # running needs the same emulator as building
    return platform_reference(engine, reference, platforms[0])


def show_remote(reference: str, reporter: Reporter, env: dict[str, str]) -> None:
    """`shipit inspect --remote`: the tag's digest and each platform it serves."""
    from shipit.cli.wiring import clients
    from shipit.services.multiplatform import inspect_remote

    remote = inspect_remote(reference, env, registry_client=clients().registry)
    if reporter.mode.json:
        reporter.emit_json(remote.as_json())
        return
    kind = "image index" if remote.as_json()["index"] else "single-platform image"
    reporter.emit(f"{remote.reference}@{remote.digest} ({kind}, {remote.media_type})")
    for entry in remote.platforms:
        reporter.emit(f"  {entry.platform!s:<16} {entry.digest}  image {entry.config_digest[:19]}")
