"""`shipit build`: build the image and tag it by the tag rules."""

from __future__ import annotations

from pathlib import Path

from shipit.cli.app import app
from shipit.cli.common import build_options, make_reporter, read_env, run_body, write_ci_outputs
from shipit.cli.options import (
    BuildArgOpt,
    CacheFromOpt,
    ContextArg,
    FileOpt,
    IidFileOpt,
    JsonOpt,
    LabelOpt,
    LatestOpt,
    MetadataFileOpt,
    NameOpt,
    NetworkOpt,
    NoCacheOpt,
    PlatformOpt,
    PullOpt,
    QuietOpt,
    SecretOpt,
    SshOpt,
    TagOpt,
    TargetOpt,
    VerboseOpt,
    VersionOpt,
)

BUILD_READ_TIMEOUT = 3600.0


@app.command()
def build(
    context: ContextArg = None,
    file: FileOpt = None,
    name: NameOpt = None,
    tag: TagOpt = None,
    version: VersionOpt = None,
    latest: LatestOpt = None,
    build_arg: BuildArgOpt = None,
    target: TargetOpt = None,
    platform: PlatformOpt = None,
    pull: PullOpt = False,
    no_cache: NoCacheOpt = False,
    label: LabelOpt = None,
    network: NetworkOpt = None,
    cache_from: CacheFromOpt = None,
    secret: SecretOpt = None,
    ssh: SshOpt = None,
    iidfile: IidFileOpt = None,
    metadata_file: MetadataFileOpt = None,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build the image and tag it by the tag rules (latest, sha-<head>, version tags, --tag)."""
    reporter = make_reporter(json=json, verbose=verbose, quiet=quiet)

    def body() -> None:
        from shipit.cli.wiring import clients
        from shipit.config import load_config
        from shipit.services.build import build_image, resolve_build_settings

        env = read_env()
        cwd = Path.cwd()
        options = build_options(
            context=context,
            file=file,
            name=name,
            tag=tag,
            version=version,
            latest=latest,
            build_arg=build_arg,
            label=label,
            target=target,
            platform=platform,
            pull=pull,
            no_cache=no_cache,
            network=network,
            cache_from=cache_from,
            secret=secret,
            ssh=ssh,
        )
        settings = resolve_build_settings(options, load_config(cwd), cwd, env)
        # A RUN step may print nothing for minutes (BuildKit sends no progress meanwhile):
        # the engine's read timeout for a build is an hour, not the stall timeout of a push.
        engine = clients().engine(env, timeout=BUILD_READ_TIMEOUT)
        from shipit.cli.platforms import build_for_platforms

        if build_for_platforms(settings, engine, reporter, env) is not None:
            return  # several --platform values: built, reported
        result = build_image(settings, engine, reporter)
        write_ci_outputs(
            env,
            result.name,
            [f"{result.name}:{t}" for t in result.tags],
            [],
            image_id=result.image_id,
            iidfile=iidfile,
            metadata_file=metadata_file,
        )
        if json:
            reporter.emit_json(result.as_json())
        else:
            reporter.success(
                f"built {result.name} {result.image_id[:19]} ({result.size_bytes / 1e6:.1f} MB)"
            )
            for built_tag in result.tags:
                reporter.emit(f"{result.name}:{built_tag}")

    run_body(reporter, body)
