"""Nothing lost, under load and under kill -9 (issue 14, items 7 and 8).

- Eight concurrent `shipit push` runs of different images and tags to one registry, through a
  fault proxy that fails about a tenth of the requests at random: every run lands with a
  digest skopeo confirms, or fails cleanly with exit 6; no tag points at a partial upload.
- `kill -9` of shipit while the engine's manifest PUT is held by the proxy (the blobs are
  sent), and again while shipit's own extra-tag PUT is held: no half-pushed tag, the release
  tag that existed before is unchanged, and the next identical run completes.

Each test writes its figures as JSON to ``$SHIPIT_FIGURES_DIR`` (default ``tests/out``), one
file per case, for docs/reliability.md. Every file has ``case``, ``item`` (of issue 14) and
``generated_at`` (UTC, ISO 8601), then:

- ``concurrent-push-faults.json``: ``runs``, ``runs_landed``, ``runs_failed_exit_6``,
  ``runs_other_exit``, ``failures`` (each failed run's error line), ``requests`` and
  ``faults_injected`` (as the proxy counted them), ``fault_rate``, ``fault_mix`` (action ->
  count), ``seed``, ``tags_requested``, ``tags_landed``, ``tags_lost``, ``tags_partial``,
  ``seconds``;
- ``kill9-before-manifest.json`` and ``kill9-before-extra-tags.json``: ``runs``, ``killed``,
  ``blob_uploads_before_kill``, ``tags_after_kill`` (tag -> digest), ``tags_half_pushed``,
  ``release_tag_unchanged``, ``tags_landed_by_next_run``, ``tags_lost``.

The load test writes its file before its final assertions (a failing run leaves its figures
too); the kill tests write theirs once every check has passed.
Everything is checked on the registry directly (its API and skopeo), never through the proxy.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, run_shipit
from tests.support import missing_binaries
from tests.support.faultproxy import (
    Action,
    FaultPlan,
    FaultProxy,
    fault_proxy,
    reset,
    stall,
    status,
)
from tests.support.registry import Registry, running_registry, skopeo_digest

pytestmark = pytest.mark.integration

RUNS = 8
FAULT_RATE = 0.10
FAULT_ACTIONS = (status(500), status(502), status(503), status(429), reset())
PUSH_TIMEOUT = 420.0
RELEASE = "1.0.0"  # the release that exists before the interrupted push
NEXT = "1.0.1"
MANIFEST_PUT = r"/v2/.+/manifests/[^/]+$"


# -- figures -----------------------------------------------------------------------------


def figures_dir() -> Path:
    return Path(os.environ.get("SHIPIT_FIGURES_DIR") or REPO_ROOT / "tests" / "out")


def write_figures(case: str, figures: dict[str, Any]) -> Path:
    """Write ``figures`` to FIGURES_DIR/CASE.json (see the module docstring)."""
    directory = figures_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{case}.json"
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    body = {"case": case, "generated_at": now.isoformat().replace("+00:00", "Z"), **figures}
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return path


# -- random faults -----------------------------------------------------------------------


class RandomFaults(FaultPlan):
    """Fail each request with probability ``rate``, with an action drawn from ``actions``.

    The proxy calls :meth:`take` under its lock, so the generator and counts need no lock.
    """

    def __init__(self, rate: float, seed: int, actions: tuple[Action, ...] = FAULT_ACTIONS):
        super().__init__()
        self.rate = rate
        self.seed = seed
        self.actions = actions
        self.random = random.Random(seed)
        self.counts: collections.Counter[str] = collections.Counter()

    def take(self, method: str, path: str) -> Action | None:
        if self.random.random() >= self.rate:
            return None
        action = self.random.choice(self.actions)
        self.counts[action.describe()] += 1
        return action


# -- images and runs ---------------------------------------------------------------------


@dataclass
class Images:
    """Tiny images in one repository, built by `shipit build` in one context directory.

    Every image shares one 256 KiB layer (so concurrent pushes race on the same blob) and has
    a layer of its own.
    """

    name: str
    context: Path
    ids: dict[str, str] = field(default_factory=dict)  # tag -> image id

    def build(self, content: str, *tag_args: str) -> str:
        (self.context / "unique.txt").write_text(content)
        run = run_shipit(
            "build", ".", "--name", self.name, "--no-latest", "--json", *tag_args, cwd=self.context
        )
        assert run.returncode == 0, run.stderr[-2000:]
        data = json.loads(run.stdout)
        for reference in data["tags"]:
            self.ids[reference.rsplit(":", 1)[1]] = data["image_id"]
        return str(data["image_id"])

    def push_command(self, registry: str, *tag_args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "shipit",
            "push",
            "--registry",
            registry,
            "--name",
            self.name,
            "--no-latest",
            "--json",
            *tag_args,
        ]

    def push(self, registry: str, *tag_args: str) -> subprocess.CompletedProcess[str]:
        command = self.push_command(registry, *tag_args)
        return subprocess.run(
            command,
            cwd=self.context,
            capture_output=True,
            text=True,
            timeout=PUSH_TIMEOUT,
            check=False,
        )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reason = missing_binaries("docker-registry", "skopeo")
    if reason:
        pytest.skip(reason)
    with running_registry(tmp_path / "registry") as running:
        yield running


@pytest.fixture
def images(tmp_path: Path, docker_api: Any) -> Iterator[Images]:
    name = f"shipit-load-{uuid.uuid4().hex[:8]}"
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\nCOPY common.bin /\nCOPY unique.txt /\n")
    (context / "common.bin").write_bytes(random.Random(name).randbytes(256 * 1024))
    yield Images(name, context)
    for image in docker_api.images():
        for reference in image.get("RepoTags") or []:
            if name in reference:
                with contextlib.suppress(Exception):
                    docker_api.remove_image(reference, force=True)


def pushed(stdout: str) -> dict[str, str]:
    """TAG -> DIGEST from a `push --json` answer."""
    data = json.loads(stdout)
    return {p["reference"].rsplit(":", 1)[1]: p["digest"] for p in data["pushed"]}


def tag_problem(registry: Registry, repo: str, tag: str) -> str | None:
    """None when ``repo:tag`` is whole (its manifest and every blob it names can be fetched
    and match their digests), else what is wrong."""
    try:
        _, manifest = registry.manifest(repo, tag)
    except Exception as exc:  # any failure is the finding
        return f"manifest: {exc}"
    for blob in [manifest["config"], *manifest["layers"]]:
        response = registry.request("GET", f"/v2/{repo}/blobs/{blob['digest']}", timeout=30)
        if response.status_code != 200:
            return f"blob {blob['digest']}: HTTP {response.status_code}"
        actual = "sha256:" + hashlib.sha256(response.content).hexdigest()
        if actual != blob["digest"]:
            return f"blob {blob['digest']}: content hashes to {actual}"
    return None


def config_digest(registry: Registry, repo: str, tag: str) -> str:
    """The image id a tag's manifest names (its config digest)."""
    _, manifest = registry.manifest(repo, tag)
    return str(manifest["config"]["digest"])


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int = 6) -> None:
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]


# -- item 7: eight concurrent pushes through random faults ---------------------------------


def _run_concurrently(
    commands: list[list[str]], cwd: Path
) -> list[subprocess.CompletedProcess[str]]:
    processes = [
        subprocess.Popen(
            command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command in commands
    ]
    results = []
    try:
        for command, process in zip(commands, processes, strict=True):
            out, err = process.communicate(timeout=PUSH_TIMEOUT)
            results.append(subprocess.CompletedProcess(command, process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@dataclass
class Verdict:
    """What eight runs left behind, judged on the registry directly."""

    landed: int = 0
    failures: list[str] = field(default_factory=list)  # error line of each exit-6 run
    unclean: list[str] = field(default_factory=list)  # runs that exited neither 0 nor 6
    lost: list[str] = field(default_factory=list)  # reported as pushed, not served
    partial: list[str] = field(default_factory=list)  # present but not whole
    present: list[str] = field(default_factory=list)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _judge(
    results: list[subprocess.CompletedProcess[str]], registry: Registry, images: Images
) -> Verdict:
    verdict, repo = Verdict(), images.name
    for i, result in enumerate(results):
        assert "Traceback" not in result.stderr, f"run {i}:\n{result.stderr[-2000:]}"
        if result.returncode == 0:
            verdict.landed += 1
            for tag, digest in pushed(result.stdout).items():
                served = registry.manifest_digest(repo, tag)
                if served != digest or skopeo_digest(registry.reference(repo, tag)) != digest:
                    verdict.lost.append(f"{tag}: reported {digest}, served {served}")
        elif result.returncode == 6:
            assert_clean_failure(result)
            verdict.failures += _error_lines(result.stderr)
        else:
            lines = _error_lines(result.stderr) or [result.stderr[-500:]]
            verdict.unclean.append(f"run {i} exit {result.returncode}: {lines[-1]}")
    verdict.present = registry.tags(repo)
    for tag in verdict.present:
        problem = tag_problem(registry, repo, tag)
        if problem:
            verdict.partial.append(f"{tag}: {problem}")
        elif config_digest(registry, repo, tag) != images.ids[tag]:
            verdict.partial.append(f"{tag}: names another image")
    return verdict


def test_concurrent_pushes_through_random_faults_lose_nothing(
    registry: Registry, images: Images
) -> None:
    tags = {i: (f"r{i}", f"r{i}-b") for i in range(RUNS)}
    for i, (first, second) in tags.items():
        images.build(f"image {i} {uuid.uuid4().hex}\n", "--tag", first, "--tag", second)
    seed = int(os.environ.get("SHIPIT_LOAD_SEED") or random.SystemRandom().randrange(2**32))
    plan = RandomFaults(FAULT_RATE, seed)
    started = time.monotonic()
    with fault_proxy(registry.address, faults=plan) as proxy:
        commands = [
            [
                *images.push_command(proxy.address, "--tag", first, "--tag", second),
                *("--retries", "5", "--retry-timeout", "120"),
            ]
            for first, second in tags.values()
        ]
        results = _run_concurrently(commands, images.context)
        requests, faults = proxy.requests, proxy.faults_injected
    seconds = time.monotonic() - started
    verdict = _judge(results, registry, images)
    write_figures(
        "concurrent-push-faults",
        {
            "item": 7,
            "runs": RUNS,
            "runs_landed": verdict.landed,
            "runs_failed_exit_6": len(verdict.failures),
            "runs_other_exit": len(verdict.unclean),
            "failures": verdict.failures + verdict.unclean,
            "requests": requests,
            "faults_injected": faults,
            "fault_rate": FAULT_RATE,
            "fault_mix": dict(sorted(plan.counts.items())),
            "seed": seed,
            "tags_requested": 2 * RUNS,
            "tags_landed": len(verdict.present),
            "tags_lost": len(verdict.lost),
            "tags_partial": len(verdict.partial),
            "seconds": round(seconds, 1),
        },
    )
    assert not verdict.lost, f"seed {seed}: {verdict.lost}"
    assert not verdict.partial, f"seed {seed}: {verdict.partial}"
    assert faults > 0, "the proxy injected no fault: the test proved nothing"
    assert verdict.landed > 0, f"seed {seed}: no run landed ({faults} faults in {requests})"
    assert not verdict.unclean, (
        f"seed {seed}: runs that neither landed nor exited 6: {verdict.unclean}"
    )


def test_registry_failure_during_digest_check_is_retried(
    registry: Registry, images: Images
) -> None:
    """One connection reset on the engine's manifest HEAD (shipit's digest check after the
    push) is a transient registry failure: retried, and the push lands (exit 0)."""
    images.build("digest check\n", "--tag", "t1")
    plan = FaultPlan().add(reset(), method="HEAD", path=MANIFEST_PUT, times=1)
    with fault_proxy(registry.address, faults=plan) as proxy:
        result = images.push(proxy.address, "--tag", "t1")
        assert proxy.faults_injected == 1
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr[-2000:]
    [digest] = pushed(result.stdout).values()
    assert skopeo_digest(registry.reference(images.name, "t1")) == digest


# -- item 8: kill -9 mid-push --------------------------------------------------------------


def _wait_for(
    proxy: FaultProxy, predicate: Callable[[str, str, str], bool], timeout: float = 120.0
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with proxy._lock:  # the proxy appends to its log under this lock
            log = list(proxy.log)
        if any(predicate(*entry) for entry in log):
            return True
        time.sleep(0.02)
    return False


def _held_manifest_put(method: str, path: str, action: str) -> bool:
    return method == "PUT" and "/manifests/" in path and action.startswith("stall")


@dataclass
class KillOutcome:
    case: str
    released: str  # the digest of 1.0.0 before the kill
    uploads_before_kill: int
    tags: dict[str, str]  # tag -> digest after the kill
    rerun: dict[str, str]  # tag -> digest the next run reported


def _kill_mid_push(registry: Registry, images: Images, hold: FaultPlan, case: str) -> KillOutcome:
    """Release 1.0.0 (image A), then push 1.0.1 (image B) until ``hold`` stalls a manifest
    PUT, kill -9 shipit there, check the registry, and run the same push again."""
    image_a = images.build("release A\n", "--version", RELEASE)
    first = images.push(registry.address, "--version", RELEASE)
    assert first.returncode == 0, first.stderr[-3000:]
    released = pushed(first.stdout)
    image_b = images.build(f"release B {uuid.uuid4().hex}\n", "--version", NEXT)
    repo = images.name
    with fault_proxy(registry.address, faults=hold) as proxy:
        command = images.push_command(proxy.address, "--version", NEXT)
        process = subprocess.Popen(
            command, cwd=images.context, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            held = _wait_for(proxy, _held_manifest_put)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                process.kill()
            _, err = process.communicate(timeout=30)
        assert held, f"the manifest PUT never reached the proxy:\n{err[-2000:]}"
        assert process.returncode == -signal.SIGKILL
        uploads = sum(1 for m, p, a in proxy.log if m == "PUT" and "/blobs/uploads/" in p)
        time.sleep(1.0)  # let the engine notice its client is gone
        after = {tag: registry.manifest_digest(repo, tag) for tag in registry.tags(repo)}
        for tag in after:
            assert tag_problem(registry, repo, tag) is None, (case, tag)
            assert config_digest(registry, repo, tag) in (image_a, image_b), (case, tag)
        # The release that existed before is untouched.
        assert after[RELEASE] == released[RELEASE]
        proxy.set_plan(FaultPlan())
        rerun = images.push(proxy.address, "--version", NEXT)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    landed = pushed(rerun.stdout)
    for tag, digest in landed.items():
        assert registry.manifest_digest(repo, tag) == digest
        assert skopeo_digest(registry.reference(repo, tag)) == digest
        assert config_digest(registry, repo, tag) == image_b
    assert registry.manifest_digest(repo, RELEASE) == released[RELEASE]
    tags = {tag: digest or "" for tag, digest in after.items()}
    return KillOutcome(case, released[RELEASE], uploads, tags, landed)


def _record_kill(outcome: KillOutcome, expected_b: set[str]) -> None:
    write_figures(
        outcome.case,
        {
            "item": 8,
            "runs": 2,  # the killed run and the next identical run
            "killed": 1,
            "blob_uploads_before_kill": outcome.uploads_before_kill,
            "tags_after_kill": dict(sorted(outcome.tags.items())),
            "tags_half_pushed": 0,  # asserted: every tag present was whole
            "release_tag_unchanged": outcome.tags.get(RELEASE) == outcome.released,
            "tags_landed_by_next_run": len(outcome.rerun),
            "tags_lost": len(expected_b - set(outcome.rerun)),
        },
    )


def test_kill_9_between_blobs_and_manifest_leaves_no_half_pushed_tag(
    registry: Registry, images: Images
) -> None:
    hold = FaultPlan().add(stall(), method="PUT", path=MANIFEST_PUT, times=-1)
    outcome = _kill_mid_push(registry, images, hold, "kill9-before-manifest")
    assert outcome.uploads_before_kill >= 1, "no blob was uploaded before the kill"
    # The killed run's manifest never landed: 1.0.1 does not exist, 1.0 and 1 still name 1.0.0.
    assert NEXT not in outcome.tags
    assert outcome.tags["1.0"] == outcome.tags["1"] == outcome.tags[RELEASE]
    assert set(outcome.rerun) == {NEXT, "1.0", "1"}
    _record_kill(outcome, {NEXT, "1.0", "1"})


def test_kill_9_between_first_tag_and_extra_tags_leaves_every_tag_whole(
    registry: Registry, images: Images
) -> None:
    # The engine's manifest PUT (first tag) passes; shipit's own PUT of the next tag is held.
    hold = FaultPlan().add(stall(), method="PUT", path=MANIFEST_PUT, times=-1, skip=1)
    outcome = _kill_mid_push(registry, images, hold, "kill9-before-extra-tags")
    # 1.0.1 landed whole; the extra tags were not moved yet (still the 1.0.0 image).
    assert NEXT in outcome.tags
    assert outcome.tags["1.0"] == outcome.tags["1"] == outcome.tags[RELEASE]
    assert set(outcome.rerun) == {NEXT, "1.0", "1"}
    _record_kill(outcome, {NEXT, "1.0", "1"})
