"""The Typer app and its lazy command group: declare options, resolve settings, build clients, call one function.

Heavy libraries (docker-py, boto3) are imported inside the commands that use them, so
`shipit --version` and `shipit --help` stay fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from shipit import __version__
from shipit.errors import ExitCode


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

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """Typer suggests a close command name only among built commands; here all count."""
        from difflib import get_close_matches

        try:
            return super().resolve_command(ctx, args)
        except _usage_error() as exc:
            message = str(getattr(exc, "message", ""))
            if args and message and "Did you mean" not in message:
                matches = get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    names = ", ".join(repr(m) for m in matches)
                    exc.message = f"{message.rstrip('.')}. Did you mean {names}?"  # type: ignore[attr-defined]
            raise

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["shipit.json"] = "--json" in args
        return list(super().parse_args(ctx, args))

    def invoke(self, ctx: Any) -> Any:
        """A usage error click finds (a bad option value) still answers --json with one object."""
        try:
            return super().invoke(ctx)
        except _usage_error() as exc:
            if ctx.meta.get("shipit.json"):
                import json

                from shipit.errors import UsageError

                error = UsageError(str(exc.format_message()))  # type: ignore[attr-defined]
                print(json.dumps(error.as_json()), flush=True)
            raise

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


def _usage_error() -> type[Exception]:
    """The click UsageError class Typer raises (Typer 0.2x vendors click as typer._click)."""
    from typer import core

    vendored = getattr(core, "_click", None)
    if vendored is not None:
        error_class: type[Exception] = vendored.exceptions.UsageError
        return error_class
    import click

    return click.UsageError


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


def _version_callback(value: bool) -> None:
    if value:
        print(f"shipit {__version__}")
        raise typer.Exit(ExitCode.OK)


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


def _raise_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        lazy_command()()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    except OSError as exc:  # e.g. output that cannot be written: a full disk, a closed pipe
        with contextlib.suppress(OSError):
            print(f"error: {exc.strerror or exc}", file=sys.stderr)
            # What stdout still holds cannot be written either: not again at exit (Python's
            # advice for a closed pipe), so the line above stays the only message.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(ExitCode.INTERNAL)
