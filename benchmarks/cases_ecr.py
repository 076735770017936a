"""Case 5: ECR login through moto's server (and the TLS registry behind moto's host name),
`shipit login --registry ecr` vs `aws ecr get-login-password | docker login`, and the number
of AWS calls a second login makes."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks import proc, support
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
TITLES = {"5a": TITLE_5A, "5b": TITLE_5B, "5c": TITLE_5C}

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
    "boto3 import + clients": proc.where("ecr", "make_clients"),
    "STS GetCallerIdentity": proc.where("ecr", "_caller_identity"),
    "ECR GetAuthorizationToken": proc.where("ecr", "_fetch_credentials"),
    "docker-py import + connect": proc.where("engine", "connect"),
    "engine login": proc.where("engine", "login"),
    "Docker config write": proc.where("dockerconfig|docker_config", "store"),
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


@dataclass
class EcrRun:
    """One ECR case run: moto's server, the TLS registry behind its host name, and the two
    command lines compared."""

    b: Bench
    stack: support.EcrStack
    aws: Path | None
    aws_note: str

    @property
    def shipit_cmd(self) -> list[str]:
        return self.b.shipit("login", "--registry", "ecr")

    @property
    def aws_cmd(self) -> list[str]:
        script = (
            f"set -o pipefail; {self.aws} ecr get-login-password | "
            f"docker login --username AWS --password-stdin {self.stack.host}"
        )
        return ["bash", "-c", script]

    def env(self, run_dir: Path, endpoint: str | None = None) -> dict[str, str]:
        """A run's environment: moto's (or the counting proxy's) endpoint, fresh Docker
        config and shipit cache under ``run_dir``."""
        moto = self.stack.moto
        return self.b.env(
            **{
                **moto.env(),
                "AWS_ENDPOINT_URL": endpoint or moto.endpoint_url,
                "DOCKER_CONFIG": str(run_dir / "docker"),
                "SHIPIT_CACHE_DIR": str(run_dir / "cache"),
            }
        )

    def fresh(self, command: list[str]) -> float:
        """``command`` with a fresh Docker config and token cache: wall seconds."""
        run_dir = self.b.workdir("ecr-run")
        return timed(command, env=self.env(run_dir), cwd=run_dir).seconds


@dataclass
class CallLog:
    """AWS calls per login of the counted sequence, the tokens seeded, warm login seconds."""

    calls: dict[str, Counter[str]] = field(default_factory=dict)
    seeded: int = 0
    warm: list[float] = field(default_factory=list)

    def __getitem__(self, key: str) -> Counter[str]:
        return self.calls[key]


def _call_sequence(run: EcrRun) -> CallLog:
    """AWS calls, counted at a proxy, of: a first login, a second one as moto answers, a
    second within the token's validity (seeded cache), the same with --registry-id, warm
    logins, and awscli's."""
    b, cmd, log = run.b, run.shipit_cmd, CallLog()
    with counting_proxy(run.stack.moto.port) as counter:
        run_dir = b.workdir("ecr-count")
        env = run.env(run_dir, counter.endpoint_url)
        cache_file = run_dir / "cache" / "ecr-tokens.json"
        with_id = [*cmd, "--registry-id", run.stack.moto.account_id]
        steps = [
            ("first", cmd, False),
            ("second_moto", cmd, False),
            ("second", cmd, True),
            ("first_with_id", with_id, False),
            ("second_with_id", with_id, True),  # that login may have cached a token of its own
        ]
        for key, command, seed in steps:
            if seed and cache_file.exists():
                seeded = seed_token_cache(cache_file)
                log.seeded = log.seeded or seeded
            timed(command, env=env, cwd=run_dir)
            log.calls[key] = counter.take()
        log.warm = [timed(cmd, env=env, cwd=run_dir).seconds for _ in range(b.runs)]
        log.calls["warm"] = counter.take()
        if run.aws is not None:
            timed(run.aws_cmd, env=env, cwd=run_dir)
            log.calls["aws"] = counter.take()
    return log


def _calls_result(run: EcrRun, calls: CallLog) -> CaseResult:
    account = run.stack.moto.account_id
    aws = calls.calls.get("aws")
    result = measurement(
        "5b",
        TITLE_5B,
        float(sum(calls["second"].values())),
        "calls",
        Target("==", 0, "calls"),
        notes=[
            "Counted at a loopback HTTP proxy in front of moto's server (AWS_ENDPOINT_URL "
            "points at the proxy), one fresh SHIPIT_CACHE_DIR for the sequence.",
            f"First login: {_calls(calls['first'])}.",
            f"Second login as moto answers: {_calls(calls['second_moto'])}. moto's "
            "GetAuthorizationToken says the token expired in 2015, so the token cache "
            "(valid until 10 minutes before expiresAt) rightly never serves it.",
            f"So the harness seeded the cache file: it moved the expiry of the {calls.seeded} "
            "cached token(s) to now + 12 h, the validity real ECR hands out. Second login "
            f"within the token's validity: {_calls(calls['second'])} (the measured value).",
            f"The same with `--registry-id {account}`: its first login "
            f"{_calls(calls['first_with_id'])}; its second, after seeding the cache again, "
            f"{_calls(calls['second_with_id'])}.",
            f"A warm login (seeded cache, no --registry-id) takes a median "
            f"{median(calls.warm):.3f} s ({len(calls.warm)} run(s); AWS calls during them: "
            f"{_calls(calls['warm'])}).",
            f"awscli's `get-login-password` for comparison: {_calls(aws)}."
            if aws is not None
            else "awscli not available for comparison.",
            "The zero-GetAuthorizationToken behaviour is also proven without moto's clock "
            f"problem by unit tests with an injected clock: {UNIT_TESTS}.",
        ],
    )
    if result.missed:
        _explain_calls(result, calls)
    return result


def _explain_calls(result: CaseResult, calls: CallLog) -> None:
    result.profile = "\n".join(
        [
            "AWS calls per `shipit login --registry ecr` (counting proxy):",
            f"  first login (fresh cache):          {_calls(calls['first'])}",
            f"  second, moto's 2015 expiry:         {_calls(calls['second_moto'])}",
            f"  second, cache seeded valid (12 h):  {_calls(calls['second'])}",
            f"  --registry-id, first / seeded:      {_calls(calls['first_with_id'])} / "
            f"{_calls(calls['second_with_id'])}",
        ]
    )
    result.next_step = (
        "the remaining calls come before the cache is consulted: the cache key needs "
        "the account id, which costs an STS GetCallerIdentity unless --registry-id is "
        "given. Key the cache on what needs no call (access key id, region, endpoint) "
        "and store the account id in the entry, so a warm login makes no AWS call."
        if calls["second"].get("sts:GetCallerIdentity")
        else "find which call in the table above precedes the cache look-up and move it after it."
    )


class WarmCache:
    """A token cache valid for 12 h, as real ECR's would be (moto's says 2015), copied into
    each warm run's fresh directory."""

    def __init__(self, run: EcrRun) -> None:
        self.run = run
        seed_dir = run.b.workdir("ecr-seed")
        timed(run.shipit_cmd, env=run.env(seed_dir), cwd=seed_dir)
        self.file = seed_dir / "cache" / "ecr-tokens.json"
        seed_token_cache(self.file)

    def directory(self, name: str) -> Path:
        run_dir = self.run.b.workdir(name)
        (run_dir / "cache").mkdir()
        shutil.copy(self.file, run_dir / "cache" / self.file.name)
        return run_dir

    def login(self) -> float:
        run_dir = self.directory("ecr-warm")
        return timed(self.run.shipit_cmd, env=self.run.env(run_dir), cwd=run_dir).seconds


def _profile_login(run: EcrRun, run_dir: Path) -> tuple[str, str]:
    """(profile, its breakdown) of one more login from ``run_dir`` under cProfile."""
    out, _ = run.b.profile(run.shipit_cmd[1:], run_dir, run.env(run_dir))
    return proc.format_cprofile(out, top=12), login_breakdown(out)


def _first_login_next_step(
    breakdown: str, samples: dict[str, list[float]], warm: CaseResult
) -> str:
    aws, floor, floor_docker = (median(samples[k]) for k in ("aws", "floor", "floor+docker"))
    return breakdown + (
        f" awscli's whole run including `docker login` is {aws:.2f} s. Both "
        "sides start a Python interpreter, import botocore, load the ECR service "
        "model and make the same GetAuthorizationToken call, and shipit must also "
        "import docker-py for the engine's login. A bare botocore process making "
        f"only that call already takes {floor / aws:.2f}x awscli's run "
        f"({floor_docker / aws:.2f}x with docker-py's import), so a first "
        "login cannot reach 0.5x while the stack is boto3 and docker-py; the one "
        "way under it would be signing the request without botocore. The login "
        f"within the token's validity is case 5c ({format_value(warm.metric or 0, 'x')}, "
        f"{warm.status})."
    )


def _first_login_notes(samples: dict[str, list[float]]) -> list[str]:
    aws, floor, floor_docker = (median(samples[k]) for k in ("aws", "floor", "floor+docker"))
    return [
        "Each shipit run also gets a fresh SHIPIT_CACHE_DIR, so it does the whole "
        "login: ECR GetAuthorizationToken (its token names the account: no STS "
        "call), the engine's login, the Docker config entry.",
        f"Floor of a botocore-based login, measured alternately with both sides: "
        f'`python -c "{FLOOR_BOTOCORE}"` (no CLI, no engine login) took a '
        f"median {floor:.3f} s = {floor / aws:.2f}x awscli's run; with "
        f"`import docker` added, as the engine's login needs, {floor_docker:.3f} s "
        f"= {floor_docker / aws:.2f}x. The 0.5x target is {0.5 * aws:.3f} s.",
    ]


def _timings(run: EcrRun) -> list[CaseResult]:
    """5a (first login) and 5c (cached token) against awscli + docker login, with the
    botocore floors measured alternately."""
    warm_cache = WarmCache(run)
    samples = run.b.measure(
        {
            "shipit": lambda: run.fresh(run.shipit_cmd),
            "warm": warm_cache.login,
            "aws": lambda: run.fresh(run.aws_cmd),
            "floor": lambda: run.fresh([PYTHON, "-c", FLOOR_BOTOCORE]),
            "floor+docker": lambda: run.fresh([PYTHON, "-c", FLOOR_WITH_DOCKER]),
        }
    )
    aws_side = Side("awscli v1 + docker login", show(run.aws_cmd), samples["aws"])
    setting = (
        "Both against moto's server (AWS_ENDPOINT_URL, dummy credentials in the "
        f"environment) with the TLS `docker-registry` on 127.0.0.1:443 behind `{run.stack.host}`; "
        "every run gets a fresh DOCKER_CONFIG. awscli: " + run.aws_note + "."
    )
    shipit_line = show(run.shipit_cmd)
    login = comparison(
        "5a",
        TITLE_5A,
        Side("shipit login --registry ecr", shipit_line, samples["shipit"]),
        aws_side,
        Target("<=", 0.5),
        notes=[setting, *_first_login_notes(samples)],
    )
    warm = comparison(
        "5c",
        TITLE_5C,
        Side("shipit login --registry ecr, cached token", shipit_line, samples["warm"]),
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
        login.profile, breakdown = _profile_login(run, run.b.workdir("ecr-profile"))
        login.next_step = _first_login_next_step(breakdown, samples, warm)
    if warm.missed:
        warm.profile, breakdown = _profile_login(run, warm_cache.directory("ecr-warm-profile"))
        warm.next_step = breakdown + (
            " With the token cached, what remains is the interpreter, typer, "
            "docker-py's import and the engine's login round trip."
        )
    return [login, warm]


def ecr_login(b: Bench) -> list[CaseResult]:
    reason = support.ecr_missing(PORT_WAIT_SECONDS, b.log)
    if reason:
        return [skipped(key, title, reason) for key, title in TITLES.items()]
    aws, aws_note = ensure_awscli(b)
    with support.ecr_stack(b.workdir("ecr-registry")) as stack:
        run = EcrRun(b, stack, aws, aws_note)
        results = [_calls_result(run, _call_sequence(run))]
        if aws is None:
            results += [skipped("5a", TITLE_5A, aws_note), skipped("5c", TITLE_5C, aws_note)]
        else:
            results += _timings(run)
    return sorted(results, key=lambda r: r.key)
