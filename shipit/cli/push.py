"""`shipit push`: push the selected image to every configured registry."""

from __future__ import annotations

from pathlib import Path

from shipit.cli.app import app
from shipit.cli.common import (
    Invocation,
    execute,
    registry_options,
    select_image_here,
    write_ci_outputs,
)
from shipit.cli.options import (
    AllowOverwriteOpt,
    CreateRepoOpt,
    DryRunOpt,
    ImmutableOpt,
    JsonOpt,
    KmsOpt,
    LatestOpt,
    LifecycleKeepOpt,
    LifecycleUntaggedOpt,
    NameOpt,
    NamespaceOpt,
    PasswordStdinOpt,
    ProfileOpt,
    PushCacheOpt,
    QuietOpt,
    RegionOpt,
    RegistryIdOpt,
    RegistryOpt,
    RepositoryOpt,
    RetriesOpt,
    RetryTimeOpt,
    ScanGateOpt,
    ScanTimeoutOpt,
    StallOpt,
    TagOpt,
    UsernameOpt,
    VerboseOpt,
    VersionOpt,
)
from shipit.cli.platforms import MergeOpt, PlatformOnlyOpt, PushPlatformOpt


@app.command()
def push(
    registry: RegistryOpt = None,
    name: NameOpt = None,
    tag: TagOpt = None,
    version: VersionOpt = None,
    latest: LatestOpt = None,
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    registry_id: RegistryIdOpt = None,
    repository: RepositoryOpt = None,
    create_repo: CreateRepoOpt = None,
    immutable_tags: ImmutableOpt = None,
    kms_key: KmsOpt = None,
    namespace: NamespaceOpt = None,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    allow_overwrite: AllowOverwriteOpt = False,
    push_cache: PushCacheOpt = False,
    platform: PushPlatformOpt = None,
    platform_only: PlatformOnlyOpt = False,
    merge: MergeOpt = False,
    lifecycle_keep: LifecycleKeepOpt = None,
    lifecycle_untagged_days: LifecycleUntaggedOpt = None,
    scan_gate: ScanGateOpt = None,
    scan_timeout: ScanTimeoutOpt = 600.0,
    dry_run: DryRunOpt = False,
    retries: RetriesOpt = 5,
    retry_timeout: RetryTimeOpt = 300.0,
    stall_timeout: StallOpt = 120.0,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Push the built image's tags to one or more registries and verify each digest."""
    execute(push_body, locals())


def push_body(run: Invocation) -> None:
    """Select the image, resolve registries and push settings, push (one platform or several)."""
    from shipit.cli.platforms import push_for_platforms, report_push
    from shipit.cli.pushing import emit_references, push_settings, wired_destinations
    from shipit.cli.wiring import clients
    from shipit.config import load_config
    from shipit.services.push import push_image

    o, reporter, env = run.options, run.reporter, run.env
    config = load_config(Path.cwd())
    registries = registry_options(dict(config.registry), o, reporter)
    selection = select_image_here(o, config, env)
    wired = clients()
    destinations = wired_destinations(registries, env)
    settings = push_settings(**vars(o))
    multi = push_for_platforms(
        selection,
        o.platform or config.platform,
        destinations,
        lambda: wired.engine(env, timeout=o.stall_timeout),
        reporter,
        settings,
        platform_only=o.platform_only,
        merge=o.merge,
        registry_client=wired.registry,
    )
    if multi is not None:
        report_push(multi, selection, reporter, env, dry_run=o.dry_run)
        return
    engine = wired.engine(env, timeout=o.stall_timeout)
    pushed = push_image(
        selection, destinations, engine, reporter, settings, registry_client=wired.registry
    )
    write_ci_outputs(
        env,
        selection.name,
        selection.references,
        pushed,
        image_id=None if o.dry_run else engine.require_image(selection.references[0]).id,
    )
    if o.json:
        reporter.emit_json({"pushed": [p.as_json() for p in pushed], "dry_run": o.dry_run})
    else:
        emit_references(reporter, pushed)
