"""The reliability cases: each fault the tests inject and the outcome shipit must produce.

One table drives both `tests/test_reliability.py` (the cases run against a real engine and a
real registry behind `tests/support/faultproxy.py`) and `docs/reliability.md`, which is this
module's output (`python -m tests.reliability_cases > docs/reliability.md`); a unit test fails
when the two differ.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipit.adapters.classify import RULES
from shipit.errors import ExitCode
from shipit.services.retry import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BASE_DELAY,
    DEFAULT_MAX_DELAY,
    DEFAULT_STALL_SECONDS,
    DEFAULT_TOTAL_SECONDS,
)
from tests.support.faultproxy import FaultPlan, FaultRule, garbage, reset, stall, status

# The test function that runs generic push cases (fault plan in front of one push).
PUSH_TEST = "test_push_through_fault"


@dataclass(frozen=True)
class Case:
    """One row: what is done to shipit, and what it must do about it."""

    id: str
    # The fault in words, for the doc (proxy cases add their rules, rendered from `plan`).
    fault: str
    # What must happen: the outcome, in words.
    expected: str
    exit_code: int
    # The test that runs this case (PUSH_TEST for the generic push-through-a-fault test).
    test: str = PUSH_TEST
    # Fault rules for the proxy in front of the registry (generic push cases).
    plan: Callable[[], FaultPlan] | None = None
    # Extra `shipit push` options.
    options: tuple[str, ...] = ()
    # The tag pushed; a release tag (1.2.3) also goes through the registry API check first.
    tag: str = "t1"
    # Wall-clock bound of the run, asserted.
    max_seconds: float = 60.0
    # Text stderr must contain (e.g. the retry report).
    report: tuple[str, ...] = ()
    # Push to a closed loopback port instead of the proxy.
    closed_port: bool = False
    # Push to a registry with basic auth: "right" or "wrong" credentials ("" = open registry).
    credentials: str = ""
    # Text stderr must not contain (e.g. an engine retry that must not happen).
    absent: tuple[str, ...] = ()
    # (method, path regex, count): how many such requests the proxy must have seen.
    requests: tuple[tuple[str, str, int], ...] = ()
    # How many faults the proxy must have injected (0: at least one).
    faults: int = 0

    @property
    def observations(self) -> int:
        """How many things the case's test asserts about what happened on the wire or stderr."""
        return len(self.report) + len(self.absent) + len(self.requests) + bool(self.faults)

    @property
    def fault_text(self) -> str:
        if self.plan is None:
            return self.fault
        rules = "; ".join(describe_rule(rule) for rule in self.plan().rules)
        return f"{self.fault}: {rules}" if self.fault else rules


@dataclass(frozen=True)
class Fact:
    """A statement in docs/reliability.md about what the engine or a registry does, with the
    cases whose tests observe it (each asserts the stderr or the requests that show it)."""

    text: str
    seen_in: tuple[str, ...]


FACTS: tuple[Fact, ...] = (
    Fact(
        "The engine retries a failed layer upload by itself (a 5xx, an answer it cannot read, "
        "the registry going away), after 5 s, then 10 s, and streams only `Retrying in N "
        "seconds`: shipit reports each such retry and ends the push once they outlast "
        "`--retry-timeout`.",
        ("503-forever", "garbage-json", "registry-down-mid-push"),
    ),
    Fact(
        "It does not retry a 429 on a layer's existence check (HEAD) or upload (POST, PATCH, "
        "PUT), with the registry's TOOMANYREQUESTS error or without a body, and does not pass "
        "on its Retry-After: shipit retries the push with its own backoff.",
        ("blob-upload-429",),
    ),
    Fact(
        "It does not retry a failed manifest upload, nor a reset of `GET /v2/`: shipit does "
        "(one manifest upload per shipit attempt).",
        ("manifest-503-twice", "manifest-429", "reset-first-requests"),
    ),
    Fact(
        "When its `GET /v2/` ping fails with a 503, the engine pushes without credentials and "
        "reports `unauthorized`: shipit then checks the credentials against the registry "
        "itself (it starts an upload and cancels it, as a push begins) and retries when they "
        "are accepted; only a refusal "
        "it confirms is exit 3.",
        ("ping-503-with-credentials", "ping-503-at-digest-check", "ping-503-wrong-password"),
    ),
    Fact(
        "The engine has no timeout of its own against a registry that never answers: shipit's "
        "connection to the engine uses `--stall-timeout` as its read timeout, for pushes, "
        "digest checks and `shipit login` alike.",
        ("stall-blob-upload", "login-stall"),
    ),
)


_UNREGEX = re.compile(r"[$^\\]")


def describe_rule(rule: FaultRule) -> str:
    """A fault rule in words: 'status 503 on PUT …/manifests/… (first 2)'."""
    where = f"…{_UNREGEX.sub('', rule.path)}…" if rule.path else "request"
    if rule.times < 0:
        how_often = "always"
    else:
        how_often = "the first" if rule.times == 1 else f"the first {rule.times}"
    return f"{rule.action.describe()} on {rule.method or 'every'} {where} ({how_often})"


REGISTRY, AUTH, INTERRUPTED, ENGINE = (
    ExitCode.REGISTRY,
    ExitCode.AUTH,
    ExitCode.INTERRUPTED,
    ExitCode.ENGINE,
)

CASES: tuple[Case, ...] = (
    Case(
        "manifest-503-twice",
        "the registry fails the manifest upload twice",
        "shipit retries (the engine does not), the push lands, digest verified",
        0,
        plan=lambda: FaultPlan().add(status(503), method="PUT", path=r"/manifests/", times=2),
        options=("--retries", "3", "--retry-timeout", "30"),
        max_seconds=30,
        report=("server error", "retry 2 in"),
        requests=(("PUT", r"/manifests/", 3),),
    ),
    Case(
        "manifest-429",
        "the registry throttles the manifest upload with Retry-After: 1",
        "reported as throttling, retried, lands, digest verified",
        0,
        plan=lambda: FaultPlan().add(
            status(429, retry_after=1), method="PUT", path=r"/manifests/", times=1
        ),
        max_seconds=30,
        report=("throttled", "rate limiting", "retry 1 in"),
        requests=(("PUT", r"/manifests/", 2),),
    ),
    Case(
        "release-check-429",
        "the registry throttles the release-tag check (registry API) with Retry-After: 2",
        "waits the 2 s the registry asked for (a floor under the backoff), lands",
        0,
        plan=lambda: FaultPlan().add(
            status(429, retry_after=2), method="GET", path=r"/manifests/4\.5\.6$", times=1
        ),
        tag="4.5.6",
        max_seconds=30,
        report=("throttled", "retry 1 in 2.0s"),
    ),
    Case(
        "reset-first-requests",
        "TCP reset of the first two requests",
        "retried (the engine does not retry a reset of GET /v2/), lands, digest verified",
        0,
        plan=lambda: FaultPlan().add(reset(), times=2),
        max_seconds=30,
        report=("connection reset", "retry 2 in"),
    ),
    Case(
        "blob-upload-429",
        "the registry throttles a layer's existence check, upload start, data and end once each, "
        "asking for 30 s",
        "the engine does not retry them (nor pass on Retry-After): shipit retries the push "
        "with its own backoff until all four have been met; lands, digest verified",
        0,
        plan=lambda: (
            FaultPlan()
            .add(status(429, retry_after=30), method="HEAD", path=r"/blobs/sha256:", times=1)
            .add(status(429, retry_after=30), method="POST", path=r"/blobs/uploads/$", times=1)
            .add(status(429, retry_after=30), method="PATCH", path=r"/blobs/uploads/.", times=1)
            .add(status(429, retry_after=30), method="PUT", path=r"/blobs/uploads/.", times=1)
        ),
        max_seconds=30,
        report=("throttled", "retry 1 in"),
        absent=("the engine retries",),
        faults=4,
    ),
    Case(
        "ping-503-with-credentials",
        "a registry with basic auth answers the engine's first ping with 503",
        "the engine pushes without credentials and reports unauthorized; shipit's own check "
        "finds the credentials accepted, retries, lands, digest verified",
        0,
        plan=lambda: FaultPlan().add(status(503), method="GET", path=r"^/v2/$", times=1),
        credentials="right",
        max_seconds=30,
        report=("auth_unverified", "retry 1 in"),
    ),
    Case(
        "ping-503-at-digest-check",
        "a registry with basic auth answers the engine's ping for the digest check with 503",
        "the check's unauthorized is verified the same way and retried; lands, digest verified",
        0,
        plan=lambda: FaultPlan().add(status(503), method="GET", path=r"^/v2/$", times=1, skip=1),
        credentials="right",
        max_seconds=30,
        report=("auth_unverified", "retry 1 in"),
    ),
    Case(
        "ping-reset-with-credentials",
        "a registry with basic auth resets the engine's first two pings",
        "retried, lands, digest verified",
        0,
        plan=lambda: FaultPlan().add(reset(), method="GET", path=r"^/v2/$", times=2),
        credentials="right",
        max_seconds=30,
        report=("connection reset", "retry 2 in"),
    ),
    Case(
        "ping-503-wrong-password",
        "a wrong password, and the engine's first ping answered 503",
        "exit 3 once shipit's own check is refused too; the password is never printed",
        AUTH,
        plan=lambda: FaultPlan().add(status(503), method="GET", path=r"^/v2/$", times=1),
        credentials="wrong",
        options=("--retries", "3"),
        max_seconds=30,
        report=("refused the credentials",),
        absent=("retry 1 in",),
    ),
    Case(
        "manifest-503-forever",
        "the registry fails every manifest upload",
        "exit 6 after the 2 allowed attempts, one error line, nothing reported as pushed",
        REGISTRY,
        plan=lambda: FaultPlan().add(status(503), method="PUT", path=r"/manifests/", times=-1),
        options=("--retries", "2", "--retry-timeout", "20"),
        max_seconds=20,
        report=("gave up after 2 attempts",),
    ),
    Case(
        "503-forever",
        "the registry answers 503 to everything",
        "the engine retries layer uploads by itself (after 5 s, then 10 s); shipit reports each "
        "and ends the push when --retry-timeout runs out: exit 6",
        REGISTRY,
        plan=lambda: FaultPlan().add(status(503), times=-1),
        options=("--retries", "2", "--retry-timeout", "10"),
        max_seconds=25,
        report=(
            "the engine retries it in 5s",
            "the engine retries it in 10s",
            "--retry-timeout (10s) ran out",
        ),
    ),
    Case(
        "stall-blob-upload",
        "the registry accepts blob uploads and never answers",
        "exit 6 once the engine has sent nothing for --stall-timeout",
        REGISTRY,
        plan=lambda: FaultPlan().add(stall(), method="POST", path=r"/blobs/uploads/$", times=-1),
        options=("--stall-timeout", "5", "--retries", "1"),
        max_seconds=60,
        report=("stall timeout",),
    ),
    Case(
        "garbage-bytes",
        "the registry answers with bytes that are not HTTP",
        "exit 6 at once (not retried), one line saying it is not a registry response",
        REGISTRY,
        plan=lambda: FaultPlan().add(garbage("bytes"), times=-1),
        options=("--retries", "3", "--retry-timeout", "20"),
        max_seconds=20,
        report=("not a registry response",),
    ),
    Case(
        "garbage-json",
        "the registry answers 200 with a body that is not JSON to everything",
        "the engine takes the 200s for answers and retries uploads; exit 6 when "
        "--retry-timeout runs out, never a success without a verified digest",
        REGISTRY,
        plan=lambda: FaultPlan().add(garbage("json"), times=-1),
        options=("--retries", "2", "--retry-timeout", "10"),
        max_seconds=25,
        report=("the engine retries it in", "ran out"),
    ),
    Case(
        "registry-unreachable",
        "nothing listens on the registry port",
        "connection refused is retried within the bounds, then exit 6",
        REGISTRY,
        options=("--retries", "2", "--retry-timeout", "5"),
        closed_port=True,
        max_seconds=20,
        report=("connection refused", "gave up after 2 attempts"),
    ),
    Case(
        "registry-down-mid-push",
        "the registry goes away during a layer upload and stays away",
        "the engine's upload retries are reported and cut at --retry-timeout: exit 6, "
        "nothing reported as pushed",
        REGISTRY,
        test="test_registry_going_away_mid_push",
        options=("--retries", "2", "--retry-timeout", "10"),
        max_seconds=30,
        report=("the engine retries it in",),
    ),
    Case(
        "registry-restart-mid-push",
        "the registry goes away during a layer upload and is back 4 s later",
        "the push lands after a retry, digest verified",
        0,
        test="test_registry_going_away_mid_push",
        options=("--retries", "3", "--retry-timeout", "60"),
        max_seconds=60,
    ),
    Case(
        "wrong-password-push",
        "push with a wrong password (registry with basic auth)",
        "exit 3 naming the refused credentials; the password is never printed",
        AUTH,
        test="test_wrong_password",
        max_seconds=30,
    ),
    Case(
        "wrong-password-login",
        "`shipit login` with a wrong password",
        "exit 3 (the engine's 500 carrying '401 Unauthorized' is read as authentication)",
        AUTH,
        test="test_wrong_password",
        max_seconds=30,
    ),
    Case(
        "login-stall",
        "`shipit login --stall-timeout 5` against a registry that never answers",
        "exit 6 after the default 5 attempts of 5 s each (the engine has no timeout of its own)",
        REGISTRY,
        test="test_login_against_a_stalled_registry",
        max_seconds=75,
        report=("stall timeout",),
    ),
    Case(
        "engine-unreachable",
        "DOCKER_HOST points at a socket nobody serves",
        "exit 4, one line naming the engine address",
        ENGINE,
        test="test_push_without_an_engine",
        max_seconds=30,
    ),
    Case(
        "concurrent-pushes",
        "two `shipit push` processes push different tags to one repository at once",
        "both land; each tag's digest verified",
        0,
        test="test_concurrent_pushes_to_one_repository",
        max_seconds=120,
    ),
    Case(
        "release-overwrite-refused",
        "image A pushed as 9.9.9, then a different image B as 9.9.9",
        "exit 6 before anything is pushed; the registry still serves A for 9.9.9",
        REGISTRY,
        test="test_release_tag_is_never_overwritten_by_accident",
        max_seconds=60,
    ),
    Case(
        "release-overwrite-allowed",
        "the same push of B with --allow-overwrite",
        "lands; 9.9.9 now serves B",
        0,
        test="test_release_tag_is_never_overwritten_by_accident",
        max_seconds=60,
    ),
    Case(
        "release-same-image",
        "B pushed again as 9.9.9",
        "success, 9.9.9 reported as already up to date",
        0,
        test="test_release_tag_is_never_overwritten_by_accident",
        max_seconds=60,
    ),
    Case(
        "sigint",
        "SIGINT while the registry holds a blob upload",
        "exit 130 within 10 s, no traceback",
        INTERRUPTED,
        test="test_signal_during_push",
        max_seconds=10,
    ),
    Case(
        "sigterm",
        "SIGTERM while the registry holds a blob upload",
        "exit 130 within 10 s, no traceback",
        INTERRUPTED,
        test="test_signal_during_push",
        max_seconds=10,
    ),
    Case(
        "ecr-expired-token",
        "ECR (moto + TLS registry): the cached, unexpired token is rejected with 401",
        "one fresh GetAuthorizationToken, then the push lands, digest verified",
        0,
        test="test_rejected_ecr_token_is_refreshed_once",
        max_seconds=90,
    ),
    Case(
        "secrets-github-env",
        "GITHUB_ACTIONS=true, password in SHIPIT_REGISTRY_PASSWORD; a succeeding and a "
        "failing push with --verbose --json",
        "the first line is ::add-mask::; the password appears nowhere else (stdout, stderr, "
        "GITHUB_OUTPUT, step summary)",
        0,
        test="test_secrets_are_masked_first_and_never_printed",
        max_seconds=60,
    ),
    Case(
        "secrets-github-stdin",
        "GITHUB_ACTIONS=true, password from --password-stdin",
        "the first line is ::add-mask::; the password appears nowhere else",
        0,
        test="test_stdin_password_is_masked_before_any_output",
        max_seconds=60,
    ),
)

CASES_BY_ID = {case.id: case for case in CASES}
PUSH_CASES = tuple(case for case in CASES if case.test == PUSH_TEST)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _exit(code: int) -> str:
    return "0" if code == 0 else str(code)


def render() -> str:
    """docs/reliability.md: the retry policy, the error classes and the case table."""
    lines = [
        "# Reliability: faults tried and outcomes",
        "",
        "<!-- Generated by `python -m tests.reliability_cases > docs/reliability.md`;"
        " edit tests/reliability_cases.py, not this file. -->",
        "",
        "Every case below runs in `tests/test_reliability.py` against the real Docker engine and a",
        "real registry (`docker-registry`, on loopback) behind a fault-injecting HTTP proxy",
        "(`tests/support/faultproxy.py`), or moto's ECR for the token case.",
        "",
        "## Retries and time limits",
        "",
        "| Setting | Default | Option |",
        "| --- | --- | --- |",
        f"| attempts per operation | {DEFAULT_ATTEMPTS} | `--retries` |",
        f"| total time per operation | {DEFAULT_TOTAL_SECONDS:g} s | `--retry-timeout` |",
        f"| no progress from the engine or registry | {DEFAULT_STALL_SECONDS:g} s |"
        " `--stall-timeout` |",
        f"| first backoff | {DEFAULT_BASE_DELAY:g} s, doubling | |",
        f"| longest backoff | {DEFAULT_MAX_DELAY:g} s | |",
        "| jitter | each delay is 0.5-1x the backoff | |",
        "| Retry-After | a floor under the delay, where the registry's answer reaches shipit | |",
        "",
        "- Only transient classes are retried; the others fail at once. A retry whose wait",
        "  would end after the total time is not started: the last error is reported with how",
        "  many attempts were made and how long they took. An attempt under way is bounded by",
        "  `--stall-timeout`, and an engine push by the cut described below.",
        "- Each retry is reported with its class and reason (`warning: HOST: server (...);"
        " retry 1 in 0.9s`).",
        "- A 401 with an ECR token shipit had cached fetches a fresh token and retries once.",
        "- boto3 clients use the standard retry mode.",
        "",
        "## What the engine and the registry do",
        "",
        "Each statement is observed by the cases named after it (their tests assert the",
        "stderr or the requests that show it), on this project's CI engine (Docker 20.10).",
        "",
        *(f"- {fact.text} ({', '.join(f'`{c}`' for c in fact.seen_in)})" for fact in FACTS),
        "",
        "## Error classes",
        "",
        "Texts from the engine, the registry API and ECR/Docker Hub are matched in this order"
        " (`shipit/adapters/classify.py`):",
        "",
        "| Class | Meaning | Exit | Retried |",
        "| --- | --- | --- | --- |",
    ]
    for rule in RULES:
        code = ExitCode.AUTH if rule.kind == "auth" else ExitCode.REGISTRY
        lines.append(
            f"| `{rule.kind}` | {_cell(rule.what)} | {code} | {'yes' if rule.transient else 'no'} |"
        )
    lines += [
        f"| `timeout` (stall) | the engine sent nothing for `--stall-timeout` | "
        f"{ExitCode.REGISTRY} | yes |",
        f"| `auth_unverified` | the engine said unauthorized, but the registry accepts the "
        f"credentials when shipit checks them | {ExitCode.REGISTRY} | yes |",
        f"| `other` | any text not recognised above | {ExitCode.REGISTRY} | no |",
        "",
        "## Cases",
        "",
        "| Case | Fault injected | Options | Expected outcome | Exit | Bound |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for case in CASES:
        options = f"`{' '.join(case.options)}`" if case.options else ""
        if case.tag != "t1":
            options = f"{options} tag `{case.tag}`".strip()
        lines.append(
            f"| `{case.id}` | {_cell(case.fault_text)} | {_cell(options)} | "
            f"{_cell(case.expected)} | {_exit(case.exit_code)} | < {case.max_seconds:g} s |"
        )
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- load and kill -9 figures

FIGURES_HEADING = "## Under load and under kill -9"
FIGURE_CASES = {
    "concurrent-push-faults": "8 concurrent `shipit push` runs of different tags through a "
    "proxy failing a tenth of the requests at random",
    "kill9-before-manifest": "`kill -9` of shipit with the blobs sent and the manifest not yet",
    "kill9-before-extra-tags": "`kill -9` of shipit between the first tag and the extra tags",
}


def render_figures(figures: Mapping[str, Mapping[str, Any]]) -> str:
    """The figures `tests/test_integration_load.py` wrote (one JSON object per case)."""
    lines = [
        FIGURES_HEADING,
        "",
        "Written by `tests/test_integration_load.py` (`$SHIPIT_FIGURES_DIR`, default `tests/out/`)",
        "and rendered here by `python -m tests.reliability_cases --figures tests/out`. Every tag",
        "left in the registry is checked with skopeo and by fetching its manifest and every blob.",
        "",
        "| Case | Runs | Faults injected | Tags landed | Half-pushed | Lost | Run at |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case, what in FIGURE_CASES.items():
        got = figures.get(case)
        if got is None:
            raise ValueError(f"no figures for {case}: run tests/test_integration_load.py first")
        faults = got.get(
            "faults_injected", f"kill -9 after {got.get('blob_uploads_before_kill')} blob uploads"
        )
        landed = got.get("tags_landed", got.get("tags_landed_by_next_run"))
        partial = got.get("tags_partial", got.get("tags_half_pushed"))
        lines.append(
            f"| {what} | {got['runs']} | {faults} | {landed} | {partial} | {got['tags_lost']} |"
            f" {got['generated_at']} |"
        )
    lines.append("")
    return "\n".join(lines)


def read_figures(directory: Path) -> dict[str, dict[str, Any]]:
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.json"))
    }


if __name__ == "__main__":
    import sys

    text = render()
    if sys.argv[1:2] == ["--figures"]:
        text += "\n" + render_figures(read_figures(Path(sys.argv[2])))
    print(text, end="")
