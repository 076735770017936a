"""`shipit doctor` and `shipit iam-policy`: check the machine, print the ECR policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipit.cli.app import app
from shipit.cli.common import Invocation, execute
from shipit.cli.options import (
    CacheFromOpt,
    JsonOpt,
    KmsOpt,
    LifecycleKeepOpt,
    LifecycleUntaggedOpt,
    ProfileOpt,
    QuietOpt,
    RegionOpt,
    RegistryTargetOpt,
    ScanGateOpt,
    VerboseOpt,
)
from shipit.errors import ShipitError


@app.command()
def doctor(
    registry: RegistryTargetOpt = None,
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check the engine, disk, Docker config, AWS identity and permissions, Docker Hub login."""
    execute(doctor_body, locals())


def doctor_body(run: Invocation) -> None:
    """Run every check, print them (or the --json report), fail on a required one."""
    from shipit.services import doctor as checks_mod

    results = run_checks(run.options, run.env)
    failed = checks_mod.failed_required(results)
    report = {"ok": not failed, "checks": [c.as_json() for c in results]}
    if run.options.json and not failed:
        run.reporter.emit_json(report)
    elif not run.options.json:
        for c in results:
            need = "" if c.required or c.ok is not False else " (optional: not needed here)"
            run.reporter.emit(f"{checks_mod.mark(c)} {c.name}: {c.detail}{need}")
            if c.ok is not True and c.hint:
                run.reporter.emit(f"     fix: {c.hint}")
    if failed:
        error = ShipitError(
            f"{len(failed)} required check(s) failed: " + ", ".join(c.name for c in failed)
        )
        error.exit_code = checks_mod.exit_code_for(failed[0])
        error.kind = "doctor"
        error.completed = report  # --json: the checks beside the error
        raise error


def run_checks(o: Any, env: dict[str, str]) -> list[Any]:
    """The engine, builder, disk, Docker config, AWS, Docker Hub and registry checks."""
    from shipit.cli.wiring import clients
    from shipit.config import load_config
    from shipit.services import doctor as checks_mod
    from shipit.services.registries import RegistryOptions, make_ecr_registry, parse_kind
    from shipit.settings import pick

    wired = clients()
    config = load_config(Path.cwd())
    wanted = [parse_kind(r) for r in (o.registry or config.registry.get("registries") or [])]
    options = RegistryOptions(
        region=pick(o.region or None, config.registry, "region"),
        profile=pick(o.profile or None, config.registry, "profile"),
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
    for target in wanted:
        if not isinstance(target, str):  # a registry host: reachable, and its credentials
            results += checks_mod.check_registry(target, env)
    return results


@app.command("iam-policy")
def iam_policy(
    repository: Annotated[
        str | None, typer.Option("--repository", help="Repository name (default: image name).")
    ] = None,
    region: Annotated[str, typer.Option("--region", help="Region, or * for any.")] = "*",
    account: Annotated[str, typer.Option("--account", help="Account id, or * for any.")] = "*",
    lifecycle_keep: LifecycleKeepOpt = None,
    lifecycle_untagged_days: LifecycleUntaggedOpt = None,
    scan_gate: ScanGateOpt = None,
    kms_key: KmsOpt = None,
    cache_from: CacheFromOpt = None,
    json: JsonOpt = False,
) -> None:
    """Print the least-privilege IAM policy for `shipit push` to one ECR repository.

    Pass the same --lifecycle-keep, --scan-gate, --kms-key and --cache-from as the push: each
    adds the actions it needs, and only then.
    """
    execute(iam_policy_body, locals())


def iam_policy_body(run: Invocation) -> None:
    """The policy document for the repository and the features the options turn on."""
    import json as jsonlib

    from shipit.adapters.ecr import push_policy
    from shipit.config import load_config
    from shipit.errors import UsageError

    o = run.options
    config = load_config(Path.cwd())
    name = o.repository or config.registry.get("repository") or config.name
    if not name:
        raise UsageError("no repository: pass --repository NAME")
    document = push_policy(
        name,
        region=o.region,
        account=o.account,
        lifecycle=o.lifecycle_keep is not None or o.lifecycle_untagged_days is not None,
        scan_gate=o.scan_gate is not None,
        kms_key=o.kms_key or config.registry.get("kms_key"),
        cache_from=tuple(o.cache_from or config.cache_from),
    )
    if o.json:
        actions = sorted({a for s in document["Statement"] for a in s["Action"]})
        run.reporter.emit_json({"repository": name, "actions": actions, "policy": document})
    else:
        print(jsonlib.dumps(document, indent=2))
