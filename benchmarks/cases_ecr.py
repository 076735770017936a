"""Case 5: ECR login through moto's server (and the TLS registry behind moto's host name),
`shipit login --registry ecr` vs `aws ecr get-login-password | docker login`, and the number
of AWS calls a second login makes."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks import proc
from benchmarks.bench import Bench
from benchmarks.countproxy import counting_proxy
from benchmarks.proc import PYTHON, VENV_BIN, show, timed
from benchmarks.stats import (
    CaseResult,
    Side,
    Target,
    comparison,
    format_value,
    measurement,
    median,
    skipped,
)

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
PORT_WAIT_SECONDS = 60.0

TITLE_5A = "ECR first login (no cached token) vs awscli + docker login"
TITLE_5B = "ECR: AWS calls of a second login within the token's validity"
TITLE_5C = "ECR login within the token's validity (cached token) vs awscli + docker login"

# The least any Python client of the ECR API pays for a first login: an interpreter that imports
# botocore, creates the ECR client and calls GetAuthorizationToken - no CLI, no engine login.
FLOOR_BOTOCORE = (
    "import botocore.session; "
    "botocore.session.get_session().create_client('ecr').get_authorization_token()"
)
# The same plus docker-py's import, which the engine's login needs.
FLOOR_WITH_DOCKER = FLOOR_BOTOCORE + "; import docker"

UNIT_TESTS = (
    "tests/test_ecr.py::test_token_cache_serves_a_second_instance (a second EcrRegistry with "
    "the same cache file makes zero GetAuthorizationToken calls, clock injected before moto's "
    "2015 expiry), ::test_expired_cache_entry_fetches_again, "
    "::test_credentials_reused_in_memory and ::test_cross_account_registry_makes_no_sts_call"
)


def ensure_awscli(b: Bench) -> tuple[Path | None, str]:
    """awscli v1 in the venv (installed from benchmarks/requirements.txt if missing)."""
    aws = VENV_BIN / "aws"
    if aws.exists():
        return aws, "already in the venv"
    b.log("installing awscli into the venv (benchmarks/requirements.txt)")
    run = timed(
        [PYTHON, "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
        env=dict(os.environ),
        cwd=proc.REPO,
        check=False,
        timeout=600,
    )
    if run.returncode != 0 or not aws.exists():
        return None, f"pip install awscli failed (exit {run.returncode}): {run.output[-300:]}"
    return aws, "installed by the harness"


def _ecr_ready(b: Bench) -> str | None:
    from tests.support.moto_server import moto_server_missing
    from tests.support.registry import ecr_environment_ready

    missing = moto_server_missing()
    if missing:
        return missing
    deadline = time.monotonic() + PORT_WAIT_SECONDS
    while True:
        reason = ecr_environment_ready()
        if reason is None or "443 is in use" not in reason or time.monotonic() > deadline:
            return reason
        b.log(f"waiting for {reason}")
        time.sleep(3)


def seed_token_cache(path: Path, valid_for: timedelta = timedelta(hours=12)) -> int:
    """Move every cached token's expiry to now + ``valid_for`` (what real ECR hands out);
    returns how many entries were changed."""
    data = json.loads(path.read_text())
    until = (datetime.now(UTC) + valid_for).isoformat()
    for entry in data.get("entries", {}).values():
        entry["expires_at"] = until
    path.write_text(json.dumps(data))
    os.chmod(path, 0o600)
    return len(data.get("entries", {}))


LOGIN_CALLS = {
    "boto3 import + clients": r"ecr\.py:\d+\(make_clients\)",
    "STS GetCallerIdentity": r"ecr\.py:\d+\(_caller_identity\)",
    "ECR GetAuthorizationToken": r"ecr\.py:\d+\(_fetch_credentials\)",
    "docker-py import + connect": r"engine\.py:\d+\(connect\)",
    "engine login": r"engine\.py:\d+\(login\)",
    "Docker config write": r"dockerconfig\.py:\d+\(store\)",
}


def login_breakdown(path: Path) -> str:
    # The clients are made on first use, inside the token call of a first login.
    total, parts, rest = proc.cprofile_breakdown(
        path,
        LOGIN_CALLS,
        nested={"ECR GetAuthorizationToken": "boto3 import + clients"},
    )
    shown = [f"{label} {seconds:.2f} s" for label, seconds, _ in parts]
    shown.append(f"the rest (interpreter, typer, shipit's imports) {rest:.2f} s")
    return (
        f"Under cProfile `shipit login --registry ecr` took {total:.2f} s: "
        + "; ".join(shown)
        + "."
    )


def _calls(counter: Counter[str]) -> str:
    if not counter:
        return "none"
    return ", ".join(f"{op} x{n}" for op, n in sorted(counter.items()))


def ecr_login(b: Bench) -> list[CaseResult]:
    reason = _ecr_ready(b)
    if reason:
        return [
            skipped("5a", TITLE_5A, reason),
            skipped("5b", TITLE_5B, reason),
            skipped("5c", TITLE_5C, reason),
        ]
    from tests.support.moto_server import running_moto_server
    from tests.support.registry import ecr_setup, running_ecr_registry

    setup = ecr_setup()
    assert setup is not None
    aws, aws_note = ensure_awscli(b)
    results: list[CaseResult] = []
    with (
        running_moto_server() as moto,
        running_ecr_registry(b.workdir("ecr-registry"), setup.tls_dir, setup.host) as registry,
    ):
        host = registry.registry

        def env_for(endpoint: str, run_dir: Path) -> dict[str, str]:
            return b.env(
                **{
                    **moto.env(),
                    "AWS_ENDPOINT_URL": endpoint,
                    "DOCKER_CONFIG": str(run_dir / "docker"),
                    "SHIPIT_CACHE_DIR": str(run_dir / "cache"),
                }
            )

        shipit_cmd = b.shipit("login", "--registry", "ecr")
        aws_script = (
            f"set -o pipefail; {aws} ecr get-login-password | "
            f"docker login --username AWS --password-stdin {host}"
        )

        def run_fresh(command: list[str]) -> float:
            run_dir = b.workdir("ecr-run")
            return timed(command, env=env_for(moto.endpoint_url, run_dir), cwd=run_dir).seconds

        # ---------------------------------------------------------------- 5b: count calls
        with counting_proxy(moto.port) as counter:
            run_dir = b.workdir("ecr-count")
            env = env_for(counter.endpoint_url, run_dir)
            timed(shipit_cmd, env=env, cwd=run_dir)
            first = counter.take()
            timed(shipit_cmd, env=env, cwd=run_dir)
            second_moto = counter.take()
            cache_file = run_dir / "cache" / "ecr-tokens.json"
            seeded = seed_token_cache(cache_file) if cache_file.exists() else 0
            timed(shipit_cmd, env=env, cwd=run_dir)
            second = counter.take()
            with_id = [*shipit_cmd, "--registry-id", moto.account_id]
            timed(with_id, env=env, cwd=run_dir)
            first_with_id = counter.take()
            seed_token_cache(cache_file)  # that login may have cached a token of its own
            timed(with_id, env=env, cwd=run_dir)
            second_with_id = counter.take()
            warm = [timed(shipit_cmd, env=env, cwd=run_dir).seconds for _ in range(b.runs)]
            warm_calls = counter.take()
            aws_calls: Counter[str] | None = None
            if aws is not None:
                timed(["bash", "-c", aws_script], env=env, cwd=run_dir)
                aws_calls = counter.take()
        total = sum(second.values())
        result = measurement(
            "5b",
            TITLE_5B,
            float(total),
            "calls",
            Target("==", 0, "calls"),
            notes=[
                "Counted at a loopback HTTP proxy in front of moto's server (AWS_ENDPOINT_URL "
                "points at the proxy), one fresh SHIPIT_CACHE_DIR for the sequence.",
                f"First login: {_calls(first)}.",
                f"Second login as moto answers: {_calls(second_moto)}. moto's "
                "GetAuthorizationToken says the token expired in 2015, so the token cache "
                "(valid until 10 minutes before expiresAt) rightly never serves it.",
                f"So the harness seeded the cache file: it moved the expiry of the {seeded} "
                "cached token(s) to now + 12 h, the validity real ECR hands out. Second login "
                f"within the token's validity: {_calls(second)} (the measured value).",
                f"The same with `--registry-id {moto.account_id}`: its first login "
                f"{_calls(first_with_id)}; its second, after seeding the cache again, "
                f"{_calls(second_with_id)}.",
                f"A warm login (seeded cache, no --registry-id) takes a median "
                f"{median(warm):.3f} s ({len(warm)} run(s); AWS calls during them: "
                f"{_calls(warm_calls)}).",
                (
                    f"awscli's `get-login-password` for comparison: {_calls(aws_calls)}."
                    if aws_calls is not None
                    else "awscli not available for comparison."
                ),
                "The zero-GetAuthorizationToken behaviour is also proven without moto's clock "
                f"problem by unit tests with an injected clock: {UNIT_TESTS}.",
            ],
        )
        if result.missed:
            result.profile = "\n".join(
                [
                    "AWS calls per `shipit login --registry ecr` (counting proxy):",
                    f"  first login (fresh cache):          {_calls(first)}",
                    f"  second, moto's 2015 expiry:         {_calls(second_moto)}",
                    f"  second, cache seeded valid (12 h):  {_calls(second)}",
                    f"  --registry-id, first / seeded:      {_calls(first_with_id)} / "
                    f"{_calls(second_with_id)}",
                ]
            )
            result.next_step = (
                "the remaining calls come before the cache is consulted: the cache key needs "
                "the account id, which costs an STS GetCallerIdentity unless --registry-id is "
                "given. Key the cache on what needs no call (access key id, region, endpoint) "
                "and store the account id in the entry, so a warm login makes no AWS call."
                if second.get("sts:GetCallerIdentity")
                else "find which call in the table above precedes the cache look-up and move it "
                "after it."
            )
        results.append(result)

        # ---------------------------------------------------------------- 5a/5c: timing
        if aws is None:
            results.append(skipped("5a", TITLE_5A, aws_note))
            results.append(skipped("5c", TITLE_5C, aws_note))
        else:
            # A token cache valid for 12 h, as real ECR's would be (moto's says 2015).
            seed_dir = b.workdir("ecr-seed")
            timed(shipit_cmd, env=env_for(moto.endpoint_url, seed_dir), cwd=seed_dir)
            seeded_cache = seed_dir / "cache" / "ecr-tokens.json"
            seed_token_cache(seeded_cache)

            def warm_dir(name: str) -> Path:
                run_dir = b.workdir(name)
                (run_dir / "cache").mkdir()
                shutil.copy(seeded_cache, run_dir / "cache" / seeded_cache.name)
                return run_dir

            def run_warm() -> float:
                run_dir = warm_dir("ecr-warm")
                env = env_for(moto.endpoint_url, run_dir)
                return timed(shipit_cmd, env=env, cwd=run_dir).seconds

            def profile_login(run_dir: Path) -> Path:
                out = run_dir / "login.prof"
                command = proc.cprofile_command(shipit_cmd[1:], out)
                timed(command, env=env_for(moto.endpoint_url, run_dir), cwd=run_dir)
                return out

            samples = b.measure(
                {
                    "shipit": lambda: run_fresh(shipit_cmd),
                    "warm": run_warm,
                    "aws": lambda: run_fresh(["bash", "-c", aws_script]),
                    "floor": lambda: run_fresh([str(PYTHON), "-c", FLOOR_BOTOCORE]),
                    "floor+docker": lambda: run_fresh([str(PYTHON), "-c", FLOOR_WITH_DOCKER]),
                }
            )
            aws_median = median(samples["aws"])
            floor = median(samples["floor"])
            floor_docker = median(samples["floor+docker"])
            aws_side = Side(
                "awscli v1 + docker login",
                show(["bash", "-c", aws_script]).replace(str(VENV_BIN) + "/", ".venv/bin/"),
                samples["aws"],
            )
            setting = (
                "Both against moto's server (AWS_ENDPOINT_URL, dummy credentials in the "
                f"environment) with the TLS `docker-registry` on 127.0.0.1:443 behind `{host}`; "
                "every run gets a fresh DOCKER_CONFIG. awscli: " + aws_note + "."
            )
            login = comparison(
                "5a",
                TITLE_5A,
                Side("shipit login --registry ecr", show(shipit_cmd), samples["shipit"]),
                aws_side,
                Target("<=", 0.5),
                notes=[
                    setting,
                    "Each shipit run also gets a fresh SHIPIT_CACHE_DIR, so it does the whole "
                    "login: ECR GetAuthorizationToken (its token names the account: no STS "
                    "call), the engine's login, the Docker config entry.",
                    f"Floor of a botocore-based login, measured alternately with both sides: "
                    f'`python -c "{FLOOR_BOTOCORE}"` (no CLI, no engine login) took a '
                    f"median {floor:.3f} s = {floor / aws_median:.2f}x awscli's run; with "
                    f"`import docker` added, as the engine's login needs, {floor_docker:.3f} s "
                    f"= {floor_docker / aws_median:.2f}x. The 0.5x target is "
                    f"{0.5 * aws_median:.3f} s.",
                ],
            )
            warm_login = comparison(
                "5c",
                TITLE_5C,
                Side(
                    "shipit login --registry ecr, cached token",
                    show(shipit_cmd),
                    samples["warm"],
                ),
                aws_side,
                Target("<=", 0.5),
                notes=[
                    setting,
                    "Each shipit run starts with the token cache of an earlier login (its "
                    "expiry moved to now + 12 h): no AWS call and no boto3 import, then the "
                    "engine's login and the Docker config entry. awscli has no token cache.",
                ],
            )
            if login.missed:
                out = profile_login(b.workdir("ecr-profile"))
                login.profile = proc.format_cprofile(out, top=12)
                login.next_step = login_breakdown(out) + (
                    f" awscli's whole run including `docker login` is {aws_median:.2f} s. Both "
                    "sides start a Python interpreter, import botocore, load the ECR service "
                    "model and make the same GetAuthorizationToken call, and shipit must also "
                    "import docker-py for the engine's login. A bare botocore process making "
                    f"only that call already takes {floor / aws_median:.2f}x awscli's run "
                    f"({floor_docker / aws_median:.2f}x with docker-py's import), so a first "
                    "login cannot reach 0.5x while the stack is boto3 and docker-py; the one "
                    "way under it would be signing the request without botocore. The login "
                    "within the token's "
                    f"validity is case 5c ({format_value(warm_login.metric or 0, 'x')}, {warm_login.status})."
                )
            if warm_login.missed:
                out = profile_login(warm_dir("ecr-warm-profile"))
                warm_login.profile = proc.format_cprofile(out, top=12)
                warm_login.next_step = login_breakdown(out) + (
                    " With the token cached, what remains is the interpreter, typer, "
                    "docker-py's import and the engine's login round trip."
                )
            results.append(login)
            results.append(warm_login)
    return sorted(results, key=lambda r: r.key)
