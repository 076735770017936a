"""`shipit doctor` and `shipit iam-policy`: check the machine, print the ECR policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipit.cli.app import app
from shipit.cli.common import make_reporter, read_env, run_body
from shipit.cli.options import JsonOpt, ProfileOpt, QuietOpt, RegionOpt, RegistryOpt, VerboseOpt
from shipit.errors import ShipitError


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
    reporter = make_reporter(json=json, verbose=verbose, quiet=quiet)

    def body() -> None:
        from shipit.cli.wiring import clients
        from shipit.config import load_config
        from shipit.services import doctor as checks_mod
        from shipit.services.registries import RegistryOptions, make_ecr_registry, parse_kind

        env = read_env()
        wired = clients()
        config = load_config(Path.cwd())
        wanted = [parse_kind(r) for r in (registry or config.registry.get("registries") or [])]
        options = RegistryOptions(
            region=region or config.registry.get("region"),
            profile=profile or config.registry.get("profile"),
        )
        engine_check, engine = checks_mod.check_engine(lambda: wired.engine(env, timeout=15))
        results = [
            engine_check,
            checks_mod.check_builder(engine, env, config.builder),
            checks_mod.check_disk(),
            checks_mod.check_docker_config(env),
        ]

        results += checks_mod.check_aws(
            lambda: make_ecr_registry(options, env, aws=wired.aws),
            required="ecr" in wanted,
            make_iam=lambda: wired.iam(options.profile),
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
            error.exit_code = checks_mod.exit_code_for(failed[0])
            raise error

    run_body(reporter, body)


@app.command("iam-policy")
def iam_policy(
    repository: Annotated[
        str | None, typer.Option("--repository", help="Repository name (default: image name).")
    ] = None,
    region: Annotated[str, typer.Option("--region", help="Region, or * for any.")] = "*",
    account: Annotated[str, typer.Option("--account", help="Account id, or * for any.")] = "*",
) -> None:
    """Print the least-privilege IAM policy JSON for pushing to one ECR repository."""
    reporter = make_reporter(json=True)

    def body() -> None:
        import json as jsonlib

        from shipit.adapters.ecr import push_policy
        from shipit.config import load_config
        from shipit.errors import UsageError

        name = repository or load_config(Path.cwd()).name
        if not name:
            raise UsageError("no repository: pass --repository NAME")
        print(jsonlib.dumps(push_policy(name, region=region, account=account), indent=2))

    run_body(reporter, body)
