"""`shipit doctor`: check the machine before a release, each check with a fix hint."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipit.adapters import dockerconfig
from shipit.errors import ExitCode, ShipitError

MIN_FREE_BYTES = 5 * 1024**3


@dataclass(frozen=True)
class Check:
    """One check's outcome. `ok` None means it could not be checked."""

    name: str
    ok: bool | None
    detail: str
    hint: str = ""
    required: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "hint": self.hint,
            "required": self.required,
        }


def check_engine(connect: Callable[[], Any]) -> tuple[Check, Any]:
    try:
        engine = connect()
        version = engine.version()
    except ShipitError as exc:
        return Check("engine", False, exc.message, exc.hint or "start dockerd", True), None
    detail = f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"
    return Check("engine", True, detail, required=True), engine


def check_builder(engine: Any, env: Mapping[str, str], configured: str | None) -> Check:
    """Which builder `shipit build` will use here: BuildKit wherever the engine has it."""
    from shipit.services.builders import BUILDKIT, choose_builder, requested_builder

    if engine is None:
        return Check("builder", None, "unknown: the engine is not reachable")
    try:
        choice = choose_builder(requested_builder(env, configured), engine.version())
    except ShipitError as exc:
        return Check("builder", False, exc.message, exc.hint or "")
    name = "BuildKit" if choice.kind == BUILDKIT else "legacy builder"
    return Check("builder", True, f"{name} ({choice.reason})")


def check_disk(path: Path = Path("/var/lib/docker")) -> Check:
    target = path if path.exists() else Path("/")
    usage = shutil.disk_usage(target)
    free_gb = usage.free / 1024**3
    ok = usage.free >= MIN_FREE_BYTES
    return Check(
        "disk",
        ok,
        f"{free_gb:.1f} GB free at {target}",
        "" if ok else "free space: shipit prune --yes, docker system prune",
    )


def check_docker_config(env: Mapping[str, str]) -> Check:
    try:
        config = dockerconfig.load(env)
    except ShipitError as exc:
        return Check("docker config", False, exc.message, "fix or remove the file", True)
    helpers = {str(v) for v in (config.get("credHelpers") or {}).values()}
    if config.get("credsStore"):
        helpers.add(str(config["credsStore"]))
    missing = sorted(h for h in helpers if shutil.which(f"docker-credential-{h}") is None)
    path = dockerconfig.config_path(env)
    if missing:
        return Check(
            "docker config",
            False,
            f"{path}: credential helper(s) not installed: {', '.join(missing)}",
            "install docker-credential-" + missing[0] + " or remove it from the config",
            True,
        )
    logins = len(config.get("auths") or {})
    detail = f"{path}: {logins} login(s)" + (
        f", helpers {', '.join(sorted(helpers))}" if helpers else ""
    )
    return Check("docker config", True, detail if path.exists() else f"{path} (none yet)")


def check_aws(
    make_registry: Callable[[], Any], *, required: bool, make_iam: Callable[[], Any] | None = None
) -> list[Check]:
    """Identity (STS), region, and ECR push permissions via IAM policy simulation."""
    from shipit.adapters.ecr import IAM_PUSH_ACTIONS

    try:
        registry = make_registry()
        region = registry.region if hasattr(registry, "region") else "?"
    except ShipitError as exc:
        return [Check("aws region", False, exc.message, exc.hint or "set AWS_REGION", required)]
    checks = [Check("aws region", True, str(region), required=required)]
    try:
        arn = registry.caller_arn()
        account = registry.account_id()
    except ShipitError as exc:
        checks.append(Check("aws identity", False, exc.message, exc.hint or "", required))
        return checks
    checks.append(Check("aws identity", True, f"account {account}, {arn}", required=required))
    if make_iam is None:
        return checks
    try:
        iam = make_iam()
        source = _policy_source_arn(arn)
        result = iam.simulate_principal_policy(
            PolicySourceArn=source, ActionNames=list(IAM_PUSH_ACTIONS)
        )
        denied = [
            r["EvalActionName"]
            for r in result.get("EvaluationResults", [])
            if r.get("EvalDecision") != "allowed"
        ]
    except Exception as exc:  # simulation needs iam:SimulatePrincipalPolicy; often not granted
        checks.append(
            Check(
                "ecr push permissions",
                None,
                f"could not check ({type(exc).__name__})",
                "grant iam:SimulatePrincipalPolicy to check, or compare with `shipit iam-policy`",
            )
        )
        return checks
    if denied:
        checks.append(
            Check(
                "ecr push permissions",
                False,
                "denied: " + ", ".join(denied),
                "attach the policy from `shipit iam-policy --repository NAME`",
                required,
            )
        )
    else:
        checks.append(
            Check("ecr push permissions", True, "all push actions allowed", required=required)
        )
    return checks


def _policy_source_arn(arn: str) -> str:
    """An assumed-role session ARN simulates as its role."""
    if ":assumed-role/" in arn:
        prefix, rest = arn.split(":assumed-role/", 1)
        role = rest.split("/", 1)[0]
        return prefix.replace(":sts:", ":iam:") + f":role/{role}"
    return arn


def check_dockerhub(env: Mapping[str, str], *, required: bool) -> Check:
    if env.get("DOCKERHUB_USERNAME") and env.get("DOCKERHUB_TOKEN"):
        return Check(
            "docker hub credentials",
            True,
            "DOCKERHUB_USERNAME and DOCKERHUB_TOKEN set",
            required=required,
        )
    try:
        found = dockerconfig.lookup(dockerconfig.DOCKER_HUB_KEY, env)
    except ShipitError:
        found = None
    if found:
        return Check(
            "docker hub credentials", True, f"Docker config login for {found[0]}", required=required
        )
    return Check(
        "docker hub credentials",
        False,
        "none found",
        "set DOCKERHUB_USERNAME and DOCKERHUB_TOKEN, or run `shipit login --registry dockerhub`",
        required,
    )


def failed_required(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if c.required and c.ok is False]


def check_registry(
    target: Any, env: Mapping[str, str], *, probe: Callable[[str], str | None] | None = None
) -> list[Check]:
    """A generic registry (`--registry HOST[:PORT][/NAMESPACE]`): reachable, and credentials."""
    from shipit.adapters.registry_probe import probe_registry
    from shipit.services.registries import host_credentials

    host = target.host
    problem = (probe or probe_registry)(host)
    checks = [
        Check(
            f"registry {host}",
            problem is None,
            problem or "answers at /v2/",
            "" if problem is None else "check the address and that the registry is running",
            True,
        )
    ]
    try:
        auth = host_credentials(host, env)
    except ShipitError as exc:
        return [*checks, Check(f"registry {host} credentials", False, exc.message, "", True)]
    detail = f"as {auth.username}" if auth else "none (pushes anonymously)"
    return [*checks, Check(f"registry {host} credentials", True, detail, required=True)]


def mark(check: Check) -> str:
    """The mark a check's line starts with: a failed optional check is not a FAIL."""
    if check.ok is None:
        return "??  "
    if check.ok:
        return "ok  "
    return "FAIL" if check.required else "skip"


def exit_code_for(check: Check) -> int:
    """The exit code of a failed check's class: engine, Docker config (usage), else credentials."""
    if check.name.startswith("registry ") and not check.name.endswith(" credentials"):
        return ExitCode.REGISTRY
    return {"engine": ExitCode.ENGINE, "docker config": ExitCode.USAGE}.get(
        check.name, ExitCode.AUTH
    )
