"""The command line: declare options, resolve settings, build clients, call one function.

Heavy libraries (docker-py, boto3) are imported inside the commands that use them, so
`shipit --version` and `shipit --help` stay fast.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from shipit import __version__
from shipit.errors import ExitCode, Interrupted, ShipitError


class LazyGroup(TyperGroup):
    """The root command group; `main()` fills it lazily.

    Typer turns every command's signature into click parameters before anything runs: for
    ten commands that is most of `shipit --help`'s and `shipit --version`'s own time. Here a
    command is built only when it is invoked; the help listing needs just each command's
    name and docstring. Built eagerly (Typer's CliRunner), it is a plain TyperGroup.
    """

    pending: dict[str, Any]
    order: list[str]

    def list_commands(self, ctx: Any) -> list[str]:
        if not getattr(self, "pending", None):
            return super().list_commands(ctx)
        return [name for name in self.order if name in self.pending or name in self.commands]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        info = None
        if cmd_name not in self.commands:
            info = getattr(self, "pending", {}).pop(cmd_name, None)
        if info is not None:
            from typer.main import get_command_from_info

            self.commands[cmd_name] = get_command_from_info(
                info,
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=self.rich_markup_mode,
            )
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        built = self.commands
        # Stand-ins without options, to list the pending commands the way click lists any.
        self.commands = {
            name: built.get(name) or _listing_stub(name, self.pending[name])
            for name in self.list_commands(ctx)
        }
        try:
            super().format_commands(ctx, formatter)
        finally:
            self.commands = built


def _listing_stub(name: str, info: Any) -> TyperCommand:
    import inspect

    return TyperCommand(
        name=name,
        help=inspect.cleandoc(info.help)
        if info.help is not None
        else inspect.getdoc(info.callback),
        short_help=info.short_help,
        hidden=info.hidden,
        deprecated=info.deprecated,
    )


def lazy_command() -> TyperGroup:
    """The click command `main()` runs: the root group with its commands still unbuilt."""
    import typer.main

    infos = app.registered_commands
    app.registered_commands = []
    try:
        group = typer.main.get_command(app)
    finally:
        app.registered_commands = infos
    assert isinstance(group, LazyGroup)
    group.pending = {}
    group.order = []
    for info in infos:
        assert info.callback is not None
        name = info.name or typer.main.get_command_name(info.callback.__name__)
        group.pending[name] = info
        group.order.append(name)
    return group


app = typer.Typer(
    name="shipit",
    cls=LazyGroup,
    help="Build, tag, push and verify container images (Amazon ECR, Docker Hub, any OCI registry).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# ---------------------------------------------------------------- shared options

NameOpt = Annotated[
    str | None, typer.Option("--name", envvar="SHIPIT_NAME", help="Image name (repository).")
]
TagOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tag", "-t", envvar="SHIPIT_TAGS", metavar="TAG", help="Extra tag (repeatable)."
    ),
]
VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version", envvar="SHIPIT_VERSION", help="Release version: 1.2.3 adds 1.2.3, 1.2 and 1."
    ),
]
LatestOpt = Annotated[
    bool | None,
    typer.Option("--latest/--no-latest", envvar="SHIPIT_LATEST", help="Add the 'latest' tag."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout; everything else on stderr.")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="More detail.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and results.")]


SECRET_ENV_VARS = (
    "DOCKERHUB_TOKEN",
    "SHIPIT_REGISTRY_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


def _version_callback(value: bool) -> None:
    if value:
        print(f"shipit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Show the version and exit.",
        ),
    ] = False,
) -> None:
    """Build, tag, push and verify container images."""


# ---------------------------------------------------------------- plumbing


def _env() -> dict[str, str]:
    return dict(os.environ)


def _reporter(*, json: bool = False, verbose: bool = False, quiet: bool = False) -> Any:
    from shipit.reporter import OutputMode, Reporter

    env = _env()
    mode = OutputMode.detect(env, quiet=quiet, verbose=verbose, json=json)
    reporter = Reporter(mode)
    # Secrets that arrive through the environment are masked before anything is printed.
    for var in SECRET_ENV_VARS:
        if env.get(var):
            reporter.mask(env[var])
    return reporter


def _run(reporter: Any, body: Callable[[], None]) -> None:
    """Run a command body; expected failures become one message and their exit code."""
    try:
        body()
    except ShipitError as exc:
        reporter.error(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        reporter.error(Interrupted("interrupted: stopped before finishing"))
        raise typer.Exit(ExitCode.INTERRUPTED) from None


def _ci_outputs(env: dict[str, str], image: str, tags: list[str], pushed: list[Any]) -> None:
    """Under GitHub Actions: step outputs and a summary table of what landed."""
    if env.get("GITHUB_ACTIONS") != "true":
        return
    from shipit.ci import write_github_outputs

    landed = [p for p in pushed if p.digest and p.status != "cache"]
    write_github_outputs(
        env,
        image=image,
        digest=landed[0].digest if landed else None,
        tags=tags,
        references=[f"{p.reference}@{p.digest}" for p in landed],
        rows=[(p.registry, p.reference, p.digest) for p in landed]
        or [("local", t, "") for t in tags],
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


# ---------------------------------------------------------------- build options (build, release)

ContextArg = Annotated[
    str | None,
    typer.Argument(
        envvar="SHIPIT_CONTEXT", help="Build context directory (default: config, or '.')."
    ),
]
FileOpt = Annotated[
    str | None,
    typer.Option("--file", "-f", envvar="SHIPIT_DOCKERFILE", help="Dockerfile path."),
]
BuildArgOpt = Annotated[
    list[str] | None,
    typer.Option("--build-arg", metavar="KEY=VALUE", help="KEY=VALUE build argument (repeatable)."),
]
TargetOpt = Annotated[str | None, typer.Option("--target", help="Build this stage.")]
PlatformOpt = Annotated[
    str | None, typer.Option("--platform", envvar="SHIPIT_PLATFORM", help="e.g. linux/amd64.")
]
PullOpt = Annotated[bool, typer.Option("--pull", help="Always try to pull newer base images.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not use the build cache.")]
LabelOpt = Annotated[
    list[str] | None,
    typer.Option("--label", metavar="KEY=VALUE", help="KEY=VALUE image label (repeatable)."),
]
NetworkOpt = Annotated[str | None, typer.Option("--network", help="Network for RUN steps.")]
CacheFromOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cache-from", metavar="REF", help="Image to use as a cache source (repeatable)."
    ),
]


def _build_options(**values: Any) -> Any:
    """BuildOptions from the build options both `build` and `release` declare."""
    from shipit.builder import BuildOptions, ImageOptions

    return BuildOptions(
        context=values["context"],
        dockerfile=values["file"],
        image=ImageOptions(
            name=values["name"],
            tags=values["tag"] or (),
            version=values["version"],
            latest=values["latest"],
        ),
        build_args=values["build_arg"] or (),
        labels=values["label"] or (),
        target=values["target"],
        platform=values["platform"],
        pull=values["pull"],
        no_cache=values["no_cache"],
        network=values["network"],
        cache_from=values["cache_from"] or (),
    )


# ---------------------------------------------------------------- build


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
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build the image and tag it by the tag rules (latest, sha-<head>, version tags, --tag)."""
    reporter = _reporter(json=json, verbose=verbose, quiet=quiet)

    def body() -> None:
        from shipit.builder import build_image, resolve_build_settings
        from shipit.config import load_config
        from shipit.engine import Engine

        env = _env()
        cwd = Path.cwd()
        options = _build_options(
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
        )
        settings = resolve_build_settings(options, load_config(cwd), cwd, env)
        engine = Engine.connect(env)
        result = build_image(settings, engine, reporter)
        _ci_outputs(env, result.name, [f"{result.name}:{t}" for t in result.tags], [])
        if json:
            reporter.emit_json(result.as_json())
        else:
            reporter.success(
                f"built {result.name} {result.image_id[:19]} ({result.size_bytes / 1e6:.1f} MB)"
            )
            for built_tag in result.tags:
                reporter.emit(f"{result.name}:{built_tag}")

    _run(reporter, body)


# ---------------------------------------------------------------- registries

RegistryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--registry",
        "-r",
        metavar="KIND",
        envvar="SHIPIT_REGISTRIES",
        help="ecr, dockerhub, or HOST[:PORT][/NAMESPACE] (repeatable: pushed concurrently).",
    ),
]
RegionOpt = Annotated[str | None, typer.Option("--region", help="AWS region (ECR).")]
ProfileOpt = Annotated[
    str | None, typer.Option("--profile", envvar="AWS_PROFILE", help="AWS profile (ECR).")
]
RegistryIdOpt = Annotated[
    str | None, typer.Option("--registry-id", help="Another account's ECR registry id.")
]
RepositoryOpt = Annotated[
    str | None, typer.Option("--repository", help="Repository name (default: the image name).")
]
CreateRepoOpt = Annotated[
    bool | None,
    typer.Option("--create-repo/--no-create-repo", help="Create the ECR repository if missing."),
]
ImmutableOpt = Annotated[
    bool | None,
    typer.Option("--immutable-tags/--mutable-tags", help="Tag mutability of a new ECR repository."),
]
KmsOpt = Annotated[str | None, typer.Option("--kms-key", help="KMS key for a new ECR repository.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", help="Docker Hub namespace (user or organisation).")
]
UsernameOpt = Annotated[str | None, typer.Option("--username", "-u", help="Registry user name.")]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password or token from stdin.")
]
AllowOverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--allow-overwrite",
        help="Allow replacing an existing release tag (1.2.3) with another image.",
    ),
]
PushCacheOpt = Annotated[
    bool,
    typer.Option("--push-cache", help="Also push the builder-stage cache image (NAME:buildcache)."),
]
LifecycleKeepOpt = Annotated[
    int | None,
    typer.Option("--lifecycle-keep", min=1, help="ECR: keep only the newest N tagged images."),
]
LifecycleUntaggedOpt = Annotated[
    int | None,
    typer.Option(
        "--lifecycle-untagged-days", min=1, help="ECR: expire untagged images after D days."
    ),
]
ScanGateOpt = Annotated[
    str | None,
    typer.Option(
        "--scan-gate",
        help="ECR: wait for scan-on-push findings; fail at or above LOW|MEDIUM|HIGH|CRITICAL.",
    ),
]
ScanTimeoutOpt = Annotated[
    float, typer.Option("--scan-timeout", min=1, help="ECR: seconds to wait for the scan.")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print what would happen; change nothing.")
]
RetriesOpt = Annotated[
    int,
    typer.Option(
        "--retries", min=1, max=20, envvar="SHIPIT_RETRIES", help="Attempts per operation."
    ),
]
RetryTimeOpt = Annotated[
    float,
    typer.Option(
        "--retry-timeout",
        min=1,
        envvar="SHIPIT_RETRY_TIMEOUT",
        help="Seconds for all attempts of one operation.",
    ),
]
StallOpt = Annotated[
    float,
    typer.Option(
        "--stall-timeout",
        min=1,
        envvar="SHIPIT_STALL_TIMEOUT",
        help="Fail when the engine or registry makes no progress for this many seconds.",
    ),
]


def _registry_options(
    config_registry: dict[str, Any],
    *,
    registry: list[str] | None,
    region: str | None,
    profile: str | None,
    registry_id: str | None,
    repository: str | None,
    create_repo: bool | None,
    immutable_tags: bool | None,
    kms_key: str | None,
    namespace: str | None,
    username: str | None,
    password_stdin: bool,
    reporter: Any = None,
    **hygiene: Any,
) -> Any:
    from shipit.errors import UsageError
    from shipit.registries import RegistryOptions

    password = None
    username = username or config_registry.get("username")
    if password_stdin:
        if not username:
            raise UsageError("--password-stdin needs --username")
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: nothing was read from stdin")
        if reporter is not None:
            reporter.mask(password)  # before anything else is printed
    c = config_registry

    def pick(value: Any, key: str, default: Any = None) -> Any:
        return value if value is not None else c.get(key, default)

    return RegistryOptions(
        registries=tuple(registry or c.get("registries") or ()),
        region=pick(region, "region"),
        profile=pick(profile, "profile"),
        registry_id=pick(registry_id, "registry_id"),
        repository=pick(repository, "repository"),
        create_repo=pick(create_repo, "create_repo", True),
        immutable_tags=pick(immutable_tags, "immutable_tags", False),
        kms_key=pick(kms_key, "kms_key"),
        namespace=pick(namespace, "namespace"),
        username=pick(username, "username"),
        password=password,
        **hygiene,
    )


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
    reporter = _reporter(json=json, verbose=verbose, quiet=quiet)

    def body() -> None:
        from shipit.builder import ImageOptions, resolve_context, select_image
        from shipit.config import load_config
        from shipit.engine import Engine
        from shipit.pusher import PushSettings, push_image
        from shipit.registries import make_destinations
        from shipit.retry import RetryPolicy

        env = _env()
        cwd = Path.cwd()
        config = load_config(cwd)
        options = _registry_options(
            dict(config.registry),
            registry=registry,
            region=region,
            profile=profile,
            registry_id=registry_id,
            repository=repository,
            create_repo=create_repo,
            immutable_tags=immutable_tags,
            kms_key=kms_key,
            namespace=namespace,
            username=username,
            password_stdin=password_stdin,
            reporter=reporter,
            lifecycle_keep=lifecycle_keep,
            lifecycle_untagged_days=lifecycle_untagged_days,
            scan_gate=scan_gate,
            scan_timeout=scan_timeout,
        )
        image_options = ImageOptions(name=name, tags=tag or (), version=version, latest=latest)
        selection = select_image(image_options, config, resolve_context(None, config, cwd), env=env)
        destinations = make_destinations(options, env)
        engine = Engine.connect(env, timeout=stall_timeout)
        settings = PushSettings(
            retry=RetryPolicy(attempts=retries, total_seconds=retry_timeout),
            allow_overwrite=allow_overwrite,
            dry_run=dry_run,
            stall_seconds=stall_timeout,
            push_cache=push_cache,
        )
        pushed = push_image(selection, destinations, engine, reporter, settings)
        _ci_outputs(env, selection.name, selection.references, pushed)
        if json:
            reporter.emit_json({"pushed": [p.as_json() for p in pushed], "dry_run": dry_run})
        else:
            for p in pushed:
                reporter.emit(f"{p.reference}@{p.digest}" if p.digest else p.reference)

    _run(reporter, body)


@app.command()
def login(
    registry: RegistryOpt = None,
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    registry_id: RegistryIdOpt = None,
    namespace: NamespaceOpt = None,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    retries: RetriesOpt = 5,
    retry_timeout: RetryTimeOpt = 300.0,
    stall_timeout: StallOpt = 120.0,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Log in to registries and record the login in the Docker config (like `docker login`)."""
    reporter = _reporter(json=json, verbose=verbose, quiet=quiet)

    def body() -> None:
        from shipit.config import load_config
        from shipit.engine import Engine
        from shipit.login import login_all
        from shipit.registries import make_destinations

        env = _env()
        config = load_config(Path.cwd())
        options = _registry_options(
            dict(config.registry),
            registry=registry,
            region=region,
            profile=profile,
            registry_id=registry_id,
            repository=None,
            create_repo=None,
            immutable_tags=None,
            kms_key=None,
            namespace=namespace,
            username=username,
            password_stdin=password_stdin,
            reporter=reporter,
        )
        destinations = make_destinations(options, env)
        engine = Engine.connect(env, timeout=stall_timeout)
        from shipit.retry import RetryPolicy

        results = login_all(
            destinations,
            engine,
            reporter,
            env,
            retry=RetryPolicy(attempts=retries, total_seconds=retry_timeout),
        )
        if json:
            reporter.emit_json({"logged_in": results})

    _run(reporter, body)


@app.command()
def release(
    context: ContextArg = None,
    registry: RegistryOpt = None,
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
    lifecycle_keep: LifecycleKeepOpt = None,
    lifecycle_untagged_days: LifecycleUntaggedOpt = None,
    scan_gate: ScanGateOpt = None,
    scan_timeout: ScanTimeoutOpt = 600.0,
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke", help="Run `shipit smoke` after the build; push nothing if it fails."
        ),
    ] = False,
    smoke_path: Annotated[
        str, typer.Option("--smoke-path", help="Health path for --smoke.")
    ] = "/health",
    smoke_timeout: Annotated[
        float, typer.Option("--smoke-timeout", min=1, help="Seconds --smoke waits.")
    ] = 60.0,
    dry_run: DryRunOpt = False,
    retries: RetriesOpt = 5,
    retry_timeout: RetryTimeOpt = 300.0,
    stall_timeout: StallOpt = 120.0,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build, then push: `shipit build` and `shipit push` with the same options."""
    reporter = _reporter(json=json, verbose=verbose, quiet=quiet)

    def body() -> None:
        from shipit.builder import build_image, resolve_build_settings
        from shipit.config import load_config
        from shipit.engine import Engine
        from shipit.pusher import PushSettings, push_image
        from shipit.registries import make_destinations
        from shipit.retry import RetryPolicy

        env = _env()
        cwd = Path.cwd()
        config = load_config(cwd)
        options = _build_options(
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
        )
        settings = resolve_build_settings(options, config, cwd, env)
        registry_options = _registry_options(
            dict(config.registry),
            registry=registry,
            region=region,
            profile=profile,
            registry_id=registry_id,
            repository=repository,
            create_repo=create_repo,
            immutable_tags=immutable_tags,
            kms_key=kms_key,
            namespace=namespace,
            username=username,
            password_stdin=password_stdin,
            reporter=reporter,
            lifecycle_keep=lifecycle_keep,
            lifecycle_untagged_days=lifecycle_untagged_days,
            scan_gate=scan_gate,
            scan_timeout=scan_timeout,
        )
        destinations = make_destinations(registry_options, env)
        engine = Engine.connect(env, timeout=stall_timeout)
        push_settings = PushSettings(
            retry=RetryPolicy(attempts=retries, total_seconds=retry_timeout),
            allow_overwrite=allow_overwrite,
            dry_run=dry_run,
            stall_seconds=stall_timeout,
            push_cache=push_cache,
        )
        if dry_run:
            reporter.info(
                f"would build {settings.context} as " + ", ".join(settings.image.references)
            )
            pushed = push_image(
                settings.image, destinations, engine, reporter, push_settings, built=False
            )
            built = None
        else:
            with reporter.phase("Build"):
                built = build_image(settings, engine, reporter)
            if smoke:
                from shipit.runtime import smoke_test

                with reporter.phase("Smoke test"):
                    result = smoke_test(
                        engine,
                        reporter,
                        settings.image.references[0],
                        path=smoke_path,
                        timeout=smoke_timeout,
                    )
                reporter.info(f"healthy in {result.seconds_to_healthy:.1f}s")
            pushed = push_image(settings.image, destinations, engine, reporter, push_settings)
            _ci_outputs(env, settings.image.name, settings.image.references, pushed)
        if json:
            reporter.emit_json(
                {
                    "build": built.as_json() if built else None,
                    "pushed": [p.as_json() for p in pushed],
                    "dry_run": dry_run,
                }
            )
        else:
            for p in pushed:
                reporter.emit(f"{p.reference}@{p.digest}" if p.digest else p.reference)

    _run(reporter, body)


@app.command()
def doctor(
    registry: RegistryOpt = None,
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check the engine, disk, Docker config, AWS identity and permissions, Docker Hub login."""
    reporter = _reporter(json=json, verbose=verbose, quiet=quiet)

    def body() -> None:
        from shipit import doctor as checks_mod
        from shipit.config import load_config
        from shipit.engine import Engine
        from shipit.errors import ShipitError
        from shipit.registries import RegistryOptions, make_ecr_registry, parse_kind

        env = _env()
        config = load_config(Path.cwd())
        wanted = [parse_kind(r) for r in (registry or config.registry.get("registries") or [])]
        options = RegistryOptions(
            region=region or config.registry.get("region"),
            profile=profile or config.registry.get("profile"),
        )
        engine_check, _ = checks_mod.check_engine(lambda: Engine.connect(env, timeout=15))
        results = [engine_check, checks_mod.check_disk(), checks_mod.check_docker_config(env)]

        def make_iam() -> Any:
            import boto3

            return boto3.Session(profile_name=options.profile).client("iam")

        results += checks_mod.check_aws(
            lambda: make_ecr_registry(options, env), required="ecr" in wanted, make_iam=make_iam
        )
        results.append(checks_mod.check_dockerhub(env, required="dockerhub" in wanted))
        failed = checks_mod.failed_required(results)
        if json:
            reporter.emit_json({"ok": not failed, "checks": [c.as_json() for c in results]})
        else:
            for c in results:
                mark = {True: "ok  ", False: "FAIL", None: "??  "}[c.ok]
                need = "" if c.required or c.ok is not False else " (optional)"
                reporter.emit(f"{mark} {c.name}: {c.detail}{need}")
                if c.ok is not True and c.hint:
                    reporter.emit(f"     fix: {c.hint}")
        if failed:
            error = ShipitError(
                f"{len(failed)} required check(s) failed: " + ", ".join(c.name for c in failed)
            )
            # The exit code of the first failure's class: engine 4, config 2, credentials 3.
            codes = {"engine": 4, "docker config": 2}
            error.exit_code = codes.get(failed[0].name, 3)
            raise error

    _run(reporter, body)


@app.command("iam-policy")
def iam_policy(
    repository: Annotated[
        str | None, typer.Option("--repository", help="Repository name (default: image name).")
    ] = None,
    region: Annotated[str, typer.Option("--region", help="Region, or * for any.")] = "*",
    account: Annotated[str, typer.Option("--account", help="Account id, or * for any.")] = "*",
) -> None:
    """Print the least-privilege IAM policy JSON for pushing to one ECR repository."""
    reporter = _reporter(json=True)

    def body() -> None:
        import json as jsonlib

        from shipit.config import load_config
        from shipit.ecr import push_policy
        from shipit.errors import UsageError

        name = repository or load_config(Path.cwd()).name
        if not name:
            raise UsageError("no repository: pass --repository NAME")
        print(jsonlib.dumps(push_policy(name, region=region, account=account), indent=2))

    _run(reporter, body)


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        lazy_command()()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)


import shipit.cli_runtime  # noqa
