"""The runtime commands: `smoke`, `run`, `inspect`, `prune`."""

from __future__ import annotations

from typing import Annotated

import typer

from shipit.cli.app import app
from shipit.cli.common import Invocation, connect_engine, execute, select_reference
from shipit.cli.options import (
    EnvOpt,
    JsonOpt,
    LatestOpt,
    NameOpt,
    PathOpt,
    PortOpt,
    QuietOpt,
    TagOpt,
    VerboseOpt,
    VersionOpt,
)
from shipit.cli.platforms import RemoteOpt, SmokePlatformOpt
from shipit.errors import ShipitError


@app.command()
def smoke(
    name: NameOpt = None,
    tag: TagOpt = None,
    version: VersionOpt = None,
    latest: LatestOpt = None,
    path: PathOpt = "/health",
    port: PortOpt = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, help="Seconds to wait for the app to become healthy."),
    ] = 60.0,
    env: EnvOpt = None,
    platform: SmokePlatformOpt = None,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the image on a fresh network until /health answers 200 and Docker says healthy; then remove it.

    Exit 7 when it does not become healthy in time (its last log lines are printed).
    """
    execute(smoke_body, locals())


def smoke_body(run: Invocation) -> None:
    """Run the selected image until it is healthy, then report how long that took."""
    from shipit.cli.platforms import smoke_reference
    from shipit.services.build import parse_pairs
    from shipit.services.smoke import smoke_test

    o, reporter = run.options, run.reporter
    environment = parse_pairs(o.env or (), "--env")
    _, reference = select_reference(o, run.env)
    engine = connect_engine(run.env)
    reference = smoke_reference(engine, reference, o.platform)
    result = smoke_test(
        engine, reporter, reference, path=o.path, port=o.port, timeout=o.timeout, env=environment
    )
    if o.json:
        reporter.emit_json(result.as_json())
        return
    # One line, after cleanup: the container and its URL are gone by now.
    shown = o.path if o.path.startswith("/") else f"/{o.path}"
    reporter.emit(
        f"healthy {result.image} in {result.seconds_to_healthy:.1f}s "
        f"({shown} answered {result.http_status}; container and network removed)"
    )


@app.command("run")
def run_command(
    name: NameOpt = None,
    tag: TagOpt = None,
    version: VersionOpt = None,
    latest: LatestOpt = None,
    network: Annotated[
        str | None,
        typer.Option(
            "--network",
            help="User-defined network to join (created if missing; default NAME-net).",
        ),
    ] = None,
    container_name: Annotated[
        str | None,
        typer.Option(
            "--container-name",
            help="Container name, which other containers on the network resolve (default: NAME-<random>).",
        ),
    ] = None,
    publish: Annotated[
        int | None,
        typer.Option(
            "--publish",
            min=1,
            max=65535,
            help="Host port on 127.0.0.1 (default: a free one Docker picks).",
        ),
    ] = None,
    port: PortOpt = None,
    env: EnvOpt = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach/--foreground",
            "-d/-F",
            help="Leave it running (default), or show its logs until Ctrl-C and then remove it.",
        ),
    ] = True,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Start the image on a named network with its port published on 127.0.0.1 (`docker run -d -p`)."""
    execute(start_body, locals())


def start_body(run: Invocation) -> None:
    """Start the selected image; in the foreground, follow its logs until it stops."""
    from shipit.services.build import parse_pairs
    from shipit.services.run import RunOptions, follow_container, start_container

    o, reporter = run.options, run.reporter
    environment = parse_pairs(o.env or (), "--env")
    image_name, reference = select_reference(o, run.env)
    if o.container_name is not None:
        validate_docker_name(o.container_name, "--container-name")
    default_network = f"{image_name.rsplit('/', 1)[-1]}-net"
    net = validate_docker_name(o.network or default_network, "--network")
    engine = connect_engine(run.env)
    spec = RunOptions(
        image=reference,
        network=net,
        container_name=o.container_name,
        port=o.port,
        publish=o.publish,
        env=environment,
    )
    result = start_container(engine, reporter, spec)
    if o.json:
        reporter.emit_json({**result.as_json(), "detached": o.detach})
    else:
        reporter.emit(f"{result.container_name} {result.container_id[:12]} {result.url}")
    if o.detach:
        return
    show = reporter.info if o.json else reporter.emit
    code = follow_container(engine, reporter, result, show)
    if code:
        raise ShipitError(f"container {result.container_name} exited with code {code}")


def validate_docker_name(value: str, option: str) -> str:
    """Docker's rule for container (and sensible network) names, checked before the engine is asked."""
    import re

    from shipit.errors import UsageError

    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", value):
        raise UsageError(
            f"invalid {option} '{value[:60]}': use letters, digits, '_', '.' and '-' "
            "(at least 2 characters, starting with a letter or digit)"
        )
    return value


@app.command("inspect")
def inspect_command(
    image: Annotated[
        str | None,
        typer.Argument(help="Image reference (default: the configured image's first tag)."),
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare", help="Another image to show side by side (e.g. a single-stage build)."
        ),
    ] = None,
    remote: RemoteOpt = False,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show an image's size, layers (and the instruction behind each), user, ports, healthcheck, labels."""
    execute(inspect_body, locals())


def inspect_body(run: Invocation) -> None:
    """Show one image, or two side by side; --remote reads the registry instead."""
    from shipit.model import Comparison
    from shipit.output.inspect import show_reports
    from shipit.services.inspect import inspect_image

    o, reporter = run.options, run.reporter
    reference = o.image or select_reference(None, run.env)[1]
    if o.remote:
        from shipit.cli.platforms import show_remote

        show_remote(reference, reporter, run.env)
        return
    engine = connect_engine(run.env)
    report = inspect_image(engine, reference)
    if o.compare is None:
        if o.json:
            reporter.emit_json(report.as_json())
        else:
            show_reports(reporter, [report], None)
        return
    comparison = Comparison(report, inspect_image(engine, o.compare))
    if o.json:
        reporter.emit_json(comparison.as_json())
    else:
        show_reports(reporter, [report, comparison.other], comparison)


@app.command()
def prune(
    name: NameOpt = None,
    keep: Annotated[
        int,
        typer.Option(
            "--keep", min=0, help="Keep the newest N builds of the image (by creation time)."
        ),
    ] = 3,
    all_: Annotated[
        bool,
        typer.Option("--all", help="Also remove running containers shipit started."),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Remove; without it only the plan is printed.")
    ] = False,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove only what shipit made: its stopped containers, unused networks, old builds' tags
    beyond --keep, and their dangling images. Prints the plan; acts only with --yes.
    """
    execute(prune_body, locals())


def prune_body(run: Invocation) -> None:
    """Plan what to remove, print the plan, and remove it with --yes."""
    from shipit.services.prune import apply_prune, describe_plan, plan_prune

    o, reporter = run.options, run.reporter
    image_name = select_reference(o, run.env)[0]
    engine = connect_engine(run.env)
    plan = plan_prune(engine, name=image_name, keep=o.keep, include_running=o.all_)
    for line in describe_plan(plan):
        reporter.emit(line)
    for what, reason in plan.left:
        reporter.info(f"leaving {what}: {reason}")
    for kept in plan.kept_builds:
        reporter.detail(f"keeping {', '.join(kept.repo_tags)} ({kept.id[7:19]})")
    outcome = None
    if not o.yes:
        if not plan.empty:
            reporter.info("nothing removed: run again with --yes to remove the above")
    else:
        outcome = apply_prune(engine, reporter, plan)
        reporter.success(
            f"removed {len(outcome.removed)} item(s)"
            + (f", {len(outcome.skipped)} kept by the engine" if outcome.skipped else "")
        )
    if o.json:
        reporter.emit_json(
            {
                "name": image_name,
                "dry_run": not o.yes,
                "plan": plan.as_json(),
                "removed": list(outcome.removed) if outcome else [],
                "skipped": outcome.as_json()["skipped"] if outcome else [],
            }
        )
