"""Release safety against a real engine and a real registry behind a fault-injecting proxy.

Every case comes from `tests/reliability_cases.py` (which also generates docs/reliability.md).
Each test builds its own tiny image (`FROM shipit.local/busybox` plus a unique file) with
`shipit build`, pushes it with `shipit push` in a subprocess, and checks what landed with the
registry's own API and skopeo. Everything runs on loopback and every run is time-bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, Cleanup
from tests.reliability_cases import (
    CASES,
    CASES_BY_ID,
    FACTS,
    FIGURE_CASES,
    FIGURES_HEADING,
    PUSH_CASES,
    PUSH_TEST,
    Case,
    render,
    render_figures,
)
from tests.support import missing_binaries
from tests.support.faultproxy import FaultPlan, FaultProxy, fault_proxy, stall
from tests.support.moto_server import moto_server_missing, running_moto_server
from tests.support.ports import free_port
from tests.support.registry import (
    Registry,
    ecr_environment_ready,
    ecr_setup,
    running_ecr_registry,
    running_registry,
    skopeo_digest,
)

integration = pytest.mark.integration

USER = "ci-user"
# Generated per run so a leak can only come from this run.
PASSWORD = f"Reliab1e-{uuid.uuid4().hex}"
WRONG_PASSWORD = f"Wr0ng-{uuid.uuid4().hex}"


# ---------------------------------------------------------------- unit: the table and the doc


def test_docs_reliability_md_matches_the_case_table() -> None:
    doc = REPO_ROOT / "docs" / "reliability.md"
    assert doc.is_file(), "run: python -m tests.reliability_cases > docs/reliability.md"
    text = doc.read_text(encoding="utf-8")
    static, _, figures = text.partition("\n" + FIGURES_HEADING)
    assert static == render(), (
        "docs/reliability.md is out of date: python -m tests.reliability_cases --figures "
        "tests/out > docs/reliability.md"
    )
    # The load and kill -9 figures: one row per case, nothing lost or half-pushed.
    rows = [
        line.split(" | ")
        for line in figures.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    assert len(rows) == 1 + len(FIGURE_CASES), figures
    for row in rows[1:]:
        assert (row[4], row[5]) == ("0", "0"), row


def test_figures_render_one_row_per_case() -> None:
    base = {"runs": 2, "tags_lost": 0, "generated_at": "2026-01-01T00:00:00Z"}
    figures = {
        "concurrent-push-faults": {
            **base,
            "faults_injected": 7,
            "tags_landed": 16,
            "tags_partial": 0,
        },
        "kill9-before-manifest": {
            **base,
            "blob_uploads_before_kill": 2,
            "tags_landed_by_next_run": 3,
            "tags_half_pushed": 0,
        },
        "kill9-before-extra-tags": {
            **base,
            "blob_uploads_before_kill": 2,
            "tags_landed_by_next_run": 3,
            "tags_half_pushed": 1,
        },
    }
    text = render_figures(figures)
    assert "| 7 | 16 | 0 | 0 |" in text
    assert "kill -9 after 2 blob uploads | 3 | 1 | 0 |" in text
    with pytest.raises(ValueError, match="kill9-before-manifest"):
        render_figures({"concurrent-push-faults": figures["concurrent-push-faults"]})


def test_every_case_has_a_test_and_a_unique_id() -> None:
    assert len(CASES_BY_ID) == len(CASES)
    for case in CASES:
        assert callable(globals().get(case.test)), f"{case.id}: no test named {case.test}"
        assert (case.plan is not None or case.closed_port) == (case.test == PUSH_TEST), case.id


def test_every_statement_about_the_engine_is_observed_by_a_case() -> None:
    for fact in FACTS:
        assert fact.seen_in, fact.text
        for case_id in fact.seen_in:
            assert case_id in CASES_BY_ID, f"{case_id} (named by: {fact.text[:60]}...)"
            assert CASES_BY_ID[case_id].observations, f"{case_id} asserts nothing it observes"


# ---------------------------------------------------------------- helpers


@dataclass
class Run:
    """One finished `shipit` subprocess."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def shipit(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 180,
) -> Run:
    """`python -m shipit ARGS` in `cwd`, bounded by `timeout`."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "shipit", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def assert_clean_failure(run: Run, case: Case) -> None:
    """The exit code of the case, one error line, no traceback, nothing claimed as pushed."""
    assert run.returncode == case.exit_code, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith(("error:", "::error::"))]
    assert len(errors) == 1, run.stderr
    assert "@sha256:" not in run.stdout, run.stdout


def pushed_digests(stdout: str) -> dict[str, str]:
    """REFERENCE -> DIGEST from push's plain stdout lines (REFERENCE@DIGEST)."""
    return dict(line.rsplit("@", 1) for line in stdout.splitlines() if "@sha256:" in line)


def assert_landed(registry: Registry, repo: str, tag: str, digest: str) -> None:
    """The registry (its own API, bypassing the proxy) and skopeo both serve `digest`."""
    assert registry.manifest_digest(repo, tag) == digest
    assert skopeo_digest(registry.reference(repo, tag), registry.creds) == digest


@dataclass
class TinyImage:
    """A small image built by `shipit build` in its own context directory."""

    name: str
    context: Path

    def build(self, *args: str) -> str:
        """Rebuild with fresh content; return the image id."""
        (self.context / "unique.txt").write_text(uuid.uuid4().hex)
        run = shipit(
            "build", ".", "--name", self.name, "--no-latest", "--json", *args, cwd=self.context
        )
        assert run.returncode == 0, run.stderr
        return str(json.loads(run.stdout)["image_id"])


@pytest.fixture
def tiny(
    tmp_path: Path, busybox_image: str, engine_cleanup: Cleanup, docker_api: Any
) -> Iterator[Callable[..., TinyImage]]:
    """Make tiny images; afterwards remove every tag of their repositories from the engine."""
    names: list[str] = []

    def make(tag: str = "t1", *build_args: str) -> TinyImage:
        name = f"shipit-rel-{uuid.uuid4().hex[:10]}"
        context = tmp_path / name
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY unique.txt /\n")
        image = TinyImage(name, context)
        image.build("--tag", tag, *build_args)
        names.append(name)
        return image

    yield make

    def ours(ref: str) -> bool:
        repository = ref.split("@", 1)[0] if "@" in ref else ref.rsplit(":", 1)[0]
        return any(repository == n or repository.endswith(f"/{n}") for n in names)

    for image in docker_api.images():
        refs = [*(image.get("RepoTags") or ()), *(image.get("RepoDigests") or ())]
        if any(ours(ref) for ref in refs):
            # By id: an image whose tag moved to another one is only left with digests.
            engine_cleanup.images.append(image["Id"])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reason = missing_binaries("docker-registry", "skopeo")
    if reason:
        pytest.skip(reason)
    with running_registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Registry]:
    reason = missing_binaries("docker-registry", "htpasswd", "skopeo")
    if reason:
        pytest.skip(reason)
    with running_registry(tmp_path / "auth-registry", username=USER, password=PASSWORD) as reg:
        yield reg


def push_args(registry: str, image: TinyImage, tag: str, *options: str) -> list[str]:
    return [
        "push",
        "--registry",
        registry,
        "--name",
        image.name,
        "--tag",
        tag,
        "--no-latest",
        *options,
    ]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _stalled(proxy: FaultProxy) -> bool:
    return any(action.startswith("stall") for action in proxy.actions())


# ---------------------------------------------------------------- push through one fault


def assert_requests_seen(case: Case, proxy: FaultProxy | None) -> None:
    """The proxy saw as many requests of each kind as the case says."""
    for method, path, count in case.requests:
        assert proxy is not None
        seen = [p for m, p, _ in proxy.log if m == method and re.search(path, p)]
        assert len(seen) == count, (method, path, proxy.log)


@integration
@pytest.mark.parametrize("case", PUSH_CASES, ids=[c.id for c in PUSH_CASES])
def test_push_through_fault(
    case: Case, tiny: Callable[..., TinyImage], request: pytest.FixtureRequest
) -> None:
    registry: Registry = request.getfixturevalue(
        "auth_registry" if case.credentials else "registry"
    )
    image = tiny(case.tag)
    password = WRONG_PASSWORD if case.credentials == "wrong" else PASSWORD
    env = {"SHIPIT_REGISTRY_USERNAME": USER, "SHIPIT_REGISTRY_PASSWORD": password}
    if case.closed_port:
        run = shipit(
            *push_args(f"127.0.0.1:{free_port()}", image, case.tag, *case.options),
            cwd=image.context,
        )
        proxy = None
    else:
        assert case.plan is not None
        with fault_proxy(registry.address, faults=case.plan()) as proxy:
            run = shipit(
                *push_args(proxy.address, image, case.tag, *case.options),
                cwd=image.context,
                env=env if case.credentials else None,
            )
        assert proxy.faults_injected >= 1, proxy.log
        assert proxy.faults_injected == (case.faults or proxy.faults_injected), proxy.log
    assert run.seconds < case.max_seconds, run.stderr
    for text in case.report:
        assert text in run.stderr, run.stderr
    for text in case.absent:
        assert text not in run.stderr, run.stderr
    assert_requests_seen(case, proxy)
    assert password not in run.output
    if case.exit_code != 0:
        assert_clean_failure(run, case)
        return
    assert run.returncode == 0, run.stderr
    assert proxy is not None
    [(reference, digest)] = pushed_digests(run.stdout).items()
    assert reference == f"{proxy.address}/{image.name}:{case.tag}"
    assert_landed(registry, image.name, case.tag, digest)


# ---------------------------------------------------------------- the registry goes away


@integration
@pytest.mark.parametrize("case_id", ["registry-down-mid-push", "registry-restart-mid-push"])
def test_registry_going_away_mid_push(
    case_id: str, tiny: Callable[..., TinyImage], registry: Registry
) -> None:
    """The first layer upload is held 3 s; meanwhile the registry "goes down" (connections
    are accepted and closed), for good or for 4 s."""
    case = CASES_BY_ID[case_id]
    comes_back = case.exit_code == 0
    image = tiny()
    plan = FaultPlan().add(stall(3), method="PATCH", path=r"/blobs/uploads/", times=1)
    with fault_proxy(registry.address, faults=plan) as proxy:
        stop = threading.Event()

        def outage() -> None:
            with contextlib.suppress(AssertionError):
                wait_for(lambda: _stalled(proxy) or stop.is_set(), 60, "a held upload")
                proxy.upstream_down = True
                if comes_back and not stop.wait(4):
                    proxy.upstream_down = False

        thread = threading.Thread(target=outage, daemon=True)
        thread.start()
        try:
            run = shipit(*push_args(proxy.address, image, "t1", *case.options), cwd=image.context)
        finally:
            stop.set()
            thread.join(10)
        # Gone for good, the engine's upload retry meets the outage (with a 4 s outage it may
        # or may not, depending on timing: either way the push must land).
        assert comes_back or "upstream-down" in proxy.actions(), proxy.log
    assert run.seconds < case.max_seconds, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    if not comes_back:
        assert_clean_failure(run, case)
        for text in case.report:
            assert text in run.stderr, run.stderr
        return
    assert run.returncode == 0, run.stderr
    [(_, digest)] = pushed_digests(run.stdout).items()
    assert_landed(registry, image.name, "t1", digest)


# ---------------------------------------------------------------- credentials


@integration
def test_wrong_password(
    tiny: Callable[..., TinyImage], auth_registry: Registry, tmp_path: Path
) -> None:
    image = tiny()
    with fault_proxy(auth_registry.address) as proxy:
        env = {"SHIPIT_REGISTRY_USERNAME": USER, "SHIPIT_REGISTRY_PASSWORD": WRONG_PASSWORD}
        push = shipit(
            *push_args(proxy.address, image, "t1", "--retries", "2"), cwd=image.context, env=env
        )
        login = shipit(
            "login",
            "--registry",
            proxy.address,
            "--username",
            USER,
            "--password-stdin",
            cwd=image.context,
            env={"DOCKER_CONFIG": str(tmp_path / "docker-config")},
            input=WRONG_PASSWORD + "\n",
        )
    for case_id, run in (("wrong-password-push", push), ("wrong-password-login", login)):
        case = CASES_BY_ID[case_id]
        assert_clean_failure(run, case)
        assert run.seconds < case.max_seconds
        assert "refused the credentials" in run.stderr
        assert WRONG_PASSWORD not in run.output
    assert not (tmp_path / "docker-config" / "config.json").exists()


@integration
def test_login_against_a_stalled_registry(registry: Registry, tmp_path: Path) -> None:
    case = CASES_BY_ID["login-stall"]
    with fault_proxy(registry.address, faults=FaultPlan().add(stall(), times=-1)) as proxy:
        run = shipit(
            "login",
            "--registry",
            proxy.address,
            "--username",
            USER,
            "--password-stdin",
            "--stall-timeout",
            "5",
            cwd=tmp_path,
            env={"DOCKER_CONFIG": str(tmp_path / "docker-config")},
            input=PASSWORD + "\n",
            timeout=case.max_seconds + 30,
        )
    assert_clean_failure(run, case)
    assert run.seconds < case.max_seconds, run.stderr
    for text in case.report:
        assert text in run.stderr, run.stderr
    assert PASSWORD not in run.output


@integration
def test_push_without_an_engine(tmp_path: Path) -> None:
    case = CASES_BY_ID["engine-unreachable"]
    socket_path = tmp_path / "no-engine.sock"
    run = shipit(
        "push",
        "--registry",
        "127.0.0.1:5000",
        "--name",
        "anything",
        "--tag",
        "t1",
        cwd=tmp_path,
        env={"DOCKER_HOST": f"unix://{socket_path}"},
        timeout=case.max_seconds,
    )
    assert_clean_failure(run, case)
    assert str(socket_path) in run.stderr


# ---------------------------------------------------------------- concurrency and overwrites


@integration
def test_concurrent_pushes_to_one_repository(
    tiny: Callable[..., TinyImage], registry: Registry
) -> None:
    case = CASES_BY_ID["concurrent-pushes"]
    first = tiny("a")
    # The same repository name with another image under another tag.
    second = TinyImage(first.name, first.context)
    second.build("--tag", "b")
    with fault_proxy(registry.address) as proxy:
        started = time.monotonic()
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "shipit", *push_args(proxy.address, first, tag)],
                cwd=first.context,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for tag in ("a", "b")
        ]
        outputs = []
        try:
            for process in processes:
                outputs.append(process.communicate(timeout=case.max_seconds))
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
        elapsed = time.monotonic() - started
    assert elapsed < case.max_seconds
    digests = {}
    for process, (stdout, stderr), tag in zip(processes, outputs, ("a", "b"), strict=True):
        assert process.returncode == 0, stderr
        [(reference, digest)] = pushed_digests(stdout).items()
        assert reference.endswith(f"/{first.name}:{tag}")
        assert_landed(registry, first.name, tag, digest)
        digests[tag] = digest
    assert digests["a"] != digests["b"]


@integration
def test_release_tag_is_never_overwritten_by_accident(
    tiny: Callable[..., TinyImage], registry: Registry
) -> None:
    image_a = tiny("ignored", "--version", "9.9.9")
    with fault_proxy(registry.address) as proxy:
        args = ["push", "--registry", proxy.address, "--name", image_a.name]
        args += ["--version", "9.9.9", "--no-latest", "--json"]
        first = shipit(*args, cwd=image_a.context)
        assert first.returncode == 0, first.stderr
        digest_a = {p["reference"]: p["digest"] for p in json.loads(first.stdout)["pushed"]}
        [a] = set(digest_a.values())
        assert_landed(registry, image_a.name, "9.9.9", a)

        image_a.build("--version", "9.9.9")  # image B, same name and version
        refused = shipit(*args, cwd=image_a.context)
        case = CASES_BY_ID["release-overwrite-refused"]
        assert_clean_failure(refused, case)
        assert "refusing to overwrite" in refused.stderr
        assert refused.seconds < case.max_seconds
        for tag in ("9.9.9", "9.9", "9"):
            assert registry.manifest_digest(image_a.name, tag) == a

        allowed = shipit(*args, "--allow-overwrite", cwd=image_a.context)
        case = CASES_BY_ID["release-overwrite-allowed"]
        assert allowed.returncode == case.exit_code, allowed.stderr
        assert allowed.seconds < case.max_seconds
        [b] = {p["digest"] for p in json.loads(allowed.stdout)["pushed"]}
        assert b != a
        assert_landed(registry, image_a.name, "9.9.9", b)

        again = shipit(*args, cwd=image_a.context)
        case = CASES_BY_ID["release-same-image"]
        assert again.returncode == case.exit_code, again.stderr
        assert again.seconds < case.max_seconds
        assert "already up to date" in again.stderr
        statuses = {p["reference"]: p["status"] for p in json.loads(again.stdout)["pushed"]}
        assert statuses[f"{proxy.address}/{image_a.name}:9.9.9"] == "unchanged"
        assert registry.manifest_digest(image_a.name, "9.9.9") == b


# ---------------------------------------------------------------- interrupts


@integration
@pytest.mark.parametrize(
    ("case_id", "signum"), [("sigint", signal.SIGINT), ("sigterm", signal.SIGTERM)]
)
def test_signal_during_push(
    case_id: str, signum: int, tiny: Callable[..., TinyImage], registry: Registry
) -> None:
    case = CASES_BY_ID[case_id]
    image = tiny()
    plan = FaultPlan().add(stall(), method="POST", path=r"/blobs/uploads/$", times=-1)
    with fault_proxy(registry.address, faults=plan) as proxy:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shipit",
                *push_args(proxy.address, image, "t1", "--stall-timeout", "60"),
            ],
            cwd=image.context,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: _stalled(proxy) or process.poll() is not None, 60, "a held upload")
            assert process.poll() is None, process.communicate()[1]
            sent = time.monotonic()
            process.send_signal(signum)
            stdout, stderr = process.communicate(timeout=case.max_seconds)
            elapsed = time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert process.returncode == case.exit_code, stderr
    assert elapsed < case.max_seconds
    assert "Traceback" not in stderr, stderr
    assert "interrupted" in stderr
    assert "@sha256:" not in stdout


# ---------------------------------------------------------------- ECR: a rejected cached token


@integration
def test_rejected_ecr_token_is_refreshed_once(
    tiny: Callable[..., TinyImage], tmp_path: Path
) -> None:
    reason = ecr_environment_ready() or moto_server_missing() or missing_binaries("skopeo")
    if reason:
        pytest.skip(f"ECR end-to-end environment not ready: {reason}")
    from shipit.adapters.ecr import (
        EcrCredentials,
        EcrRegistry,
        TokenCache,
        default_token_cache_path,
    )

    case = CASES_BY_ID["ecr-expired-token"]
    setup = ecr_setup()
    assert setup is not None
    image = tiny()
    cache_dir = tmp_path / "shipit-cache"
    with (
        running_moto_server() as moto,
        running_ecr_registry(tmp_path / "ecr-registry", setup.tls_dir, setup.host) as registry,
    ):
        env = {**moto.env(), "SHIPIT_CACHE_DIR": str(cache_dir)}
        # A cached token that has not expired by its date but that the registry rejects:
        # stored under the key shipit computes for these credentials and this endpoint.
        cache = TokenCache(default_token_cache_path(env))
        ecr = EcrRegistry(
            moto.client("ecr"),
            moto.client("sts"),
            region=moto.region,
            token_cache=cache,
            endpoint_id=moto.endpoint_url,
        )
        stale = EcrCredentials(
            registry=setup.host,
            username="AWS",
            password=WRONG_PASSWORD,
            expires_at=datetime.now(UTC) + timedelta(hours=6),
        )
        cache.put(ecr._cache_key(), stale)
        assert cache.get(ecr._cache_key()) == stale

        run = shipit(
            *push_args("ecr", image, "t1", "--retries", "2"),
            cwd=image.context,
            env=env,
            timeout=case.max_seconds,
        )
        assert run.returncode == 0, run.stderr
        assert run.seconds < case.max_seconds
        assert run.stderr.count("fetching a fresh ECR token") == 1, run.stderr
        assert WRONG_PASSWORD not in run.output
        assert registry.password is not None and registry.password not in run.output
        [(reference, digest)] = pushed_digests(run.stdout).items()
        assert reference == f"{setup.host}/{image.name}:t1"
        assert skopeo_digest(reference, registry.creds) == digest
        assert registry.manifest_digest(image.name, "t1") == digest
        # The rejected token is gone from the cache.
        assert cache.get(ecr._cache_key()) is None


# ---------------------------------------------------------------- secrets under GitHub Actions


def _github_env(tmp_path: Path) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_OUTPUT": str(tmp_path / "github-output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary"),
    }


def _assert_masked_first(run: Run, secret: str, tmp_path: Path) -> None:
    first_line = run.stderr.splitlines()[0] if run.stderr else ""
    assert first_line == f"::add-mask::{secret}", run.stderr
    assert run.output.count(secret) == 1, run.output
    for name in ("github-output", "step-summary"):
        path = tmp_path / name
        if path.exists():
            assert secret not in path.read_text()


@integration
def test_secrets_are_masked_first_and_never_printed(
    tiny: Callable[..., TinyImage], auth_registry: Registry, tmp_path: Path
) -> None:
    case = CASES_BY_ID["secrets-github-env"]
    image = tiny()
    with fault_proxy(auth_registry.address) as proxy:
        args = push_args(proxy.address, image, "t1", "--verbose", "--json", "--retries", "1")
        for password, code in ((PASSWORD, case.exit_code), (WRONG_PASSWORD, 3)):
            env = {
                **_github_env(tmp_path),
                "SHIPIT_REGISTRY_USERNAME": USER,
                "SHIPIT_REGISTRY_PASSWORD": password,
            }
            run = shipit(*args, cwd=image.context, env=env)
            assert run.returncode == code, run.stderr
            assert run.seconds < case.max_seconds
            assert "Traceback" not in run.stderr
            _assert_masked_first(run, password, tmp_path)
            if code == 0:
                assert json.loads(run.stdout)["pushed"][0]["digest"].startswith("sha256:")


@integration
def test_stdin_password_is_masked_before_any_output(
    tiny: Callable[..., TinyImage], auth_registry: Registry, tmp_path: Path
) -> None:
    case = CASES_BY_ID["secrets-github-stdin"]
    image = tiny()
    with fault_proxy(auth_registry.address) as proxy:
        args = push_args(proxy.address, image, "t1", "--verbose", "--json", "--retries", "1")
        run = shipit(
            *args,
            "--username",
            USER,
            "--password-stdin",
            cwd=image.context,
            env=_github_env(tmp_path),
            input=PASSWORD + "\n",
        )
    assert run.returncode == case.exit_code, run.stderr
    assert run.seconds < case.max_seconds
    _assert_masked_first(run, PASSWORD, tmp_path)
