"""`shipit build` with BuildKit, the default builder, on the real engine (and the legacy switch)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, run_shipit

pytestmark = pytest.mark.integration


def _project(root: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _build(
    context: Path, name: str, cleanup: Any, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`shipit build --json` of `context` as NAME:test; every tag it makes is removed later."""
    cleanup.images.extend([f"{name}:test", f"{name}:buildcache"])
    result = run_shipit(
        "build",
        str(context),
        "--name",
        name,
        "--tag",
        "test",
        "--no-latest",
        "--json",
        *args,
        env={"CI": "", **(env or {})},
    )
    if result.returncode == 0:  # --version adds tags; a second build moves them
        cleanup.track(*json.loads(result.stdout)["tags"], f"{name}:buildcache")
    return result


def _built_seconds(stderr: str, tag: str) -> float:
    match = re.search(rf"built {re.escape(tag)} in ([0-9.]+)s", stderr)
    assert match, stderr[-2000:]
    return float(match.group(1))


def test_cache_mount_is_reused_across_builds(
    tmp_path: Path, busybox_image: str, engine_cleanup: Any, unique: str
) -> None:
    dockerfile = (
        f"FROM {busybox_image}\nARG STAMP\n"
        f"RUN --mount=type=cache,id=shipit-it-{unique},target=/cache "
        "echo $STAMP >> /cache/log && wc -l < /cache/log > /count\n"
    )
    context = _project(tmp_path / "ctx", dockerfile)
    name = f"shipit-bk-cache-{unique}"
    for stamp in ("one", "two"):
        result = _build(context, name, engine_cleanup, "--build-arg", f"STAMP={stamp}")
        assert result.returncode == 0, result.stderr[-2000:]
    count = engine_cleanup.run("run", "--rm", f"{name}:test", "cat", "/count").stdout
    assert count.strip() == "2"


def test_independent_stages_run_in_parallel(
    tmp_path: Path, busybox_image: str, engine_cleanup: Any, unique: str
) -> None:
    dockerfile = (
        f"FROM {busybox_image} AS one\nRUN sleep 2 && echo {unique} > /one\n"
        f"FROM {busybox_image} AS two\nRUN sleep 2 && echo {unique} > /two\n"
        f"FROM {busybox_image}\nCOPY --from=one /one /one\nCOPY --from=two /two /two\n"
    )
    context = _project(tmp_path / "ctx", dockerfile)
    name = f"shipit-bk-par-{unique}"
    result = _build(context, name, engine_cleanup, "--no-cache")
    assert result.returncode == 0, result.stderr[-2000:]
    runs = [float(s) for s in re.findall(r"#\d+ DONE ([0-9.]+)s", result.stderr)]
    runs = [s for s in runs if s >= 1.9]
    assert len(runs) == 2, result.stderr
    # One after the other, the build would take at least both steps' time.
    assert _built_seconds(result.stderr, f"{name}:test") < sum(runs) - 0.5, result.stderr


def test_a_failing_run_shows_its_output_and_exit_code(
    tmp_path: Path, busybox_image: str, engine_cleanup: Any, unique: str
) -> None:
    dockerfile = (
        f"FROM {busybox_image}\nRUN echo first-{unique} && echo 'last [/dim] line' && exit 3\n"
    )
    context = _project(tmp_path / "ctx", dockerfile)
    result = _build(context, f"shipit-bk-fail-{unique}", engine_cleanup, "--no-cache")
    assert result.returncode == 5, result.stderr[-2000:]
    assert f"  | first-{unique}" in result.stderr
    assert "  | last [/dim] line" in result.stderr
    assert re.search(r"error: build failed at \[2/2\] RUN echo .*: exit code 3", result.stderr)
    error = json.loads(result.stdout)["error"] if result.stdout.strip() else None
    if error is not None:  # --json on failure, where the output package gives one
        assert error["exit_code"] == 5


def test_dockerignore_is_honoured(
    tmp_path: Path, busybox_image: str, engine_cleanup: Any, unique: str
) -> None:
    dockerfile = (
        f"FROM {busybox_image}\nCOPY . /ctx/\n"
        "RUN test -f /ctx/keep.txt && test ! -e /ctx/secret.env && test ! -e /ctx/logs/a.log\n"
    )
    files = {
        ".dockerignore": "secret.env\nlogs\n",
        "keep.txt": "keep\n",
        "secret.env": "TOKEN=x\n",
        "logs/a.log": "log\n",
    }
    context = _project(tmp_path / "ctx", dockerfile, files)
    result = _build(context, f"shipit-bk-ign-{unique}", engine_cleanup, "--no-cache")
    assert result.returncode == 0, result.stderr[-2000:]


def test_oci_labels_and_inline_cache_are_on_the_image(
    tmp_path: Path, busybox_image: str, engine_cleanup: Any, docker_api: Any, unique: str
) -> None:
    context = _project(tmp_path / "ctx", f"FROM {busybox_image}\nRUN echo {unique} > /x\n")
    name = f"shipit-bk-label-{unique}"
    result = _build(context, name, engine_cleanup, "--version", "1.2.3", "--label", "team=a")
    assert result.returncode == 0, result.stderr[-2000:]
    image = docker_api.inspect_image(f"{name}:test")
    labels = image["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == name
    assert labels["org.opencontainers.image.version"] == "1.2.3"
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert labels["io.shipit.image"] == name and labels["team"] == "a"
    # BUILDKIT_INLINE_CACHE=1: the image config carries the cache metadata --cache-from reads.
    assert image["Id"] == json.loads(result.stdout)["image_id"]
    assert "moby.buildkit.cache.v0" in _image_config(f"{name}:test")
    history = engine_cleanup.run("history", "--no-trunc", f"{name}:test").stdout
    assert "BUILDKIT_INLINE_CACHE" not in history


def _image_config(reference: str) -> dict[str, Any]:
    """The image's config JSON, from `docker save` (inspect leaves out BuildKit's keys)."""
    import io
    import tarfile

    saved = subprocess.run(["docker", "save", reference], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(saved.stdout)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config: dict[str, Any] = json.load(tar.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
    return config


def test_legacy_switch_builds_with_the_legacy_builder(
    tmp_path: Path, busybox_image: str, engine_cleanup: Any, unique: str
) -> None:
    context = _project(tmp_path / "ctx", f"FROM {busybox_image}\nRUN echo {unique}\n")
    name = f"shipit-bk-legacy-{unique}"
    legacy = _build(context, name, engine_cleanup, "-v", env={"DOCKER_BUILDKIT": "0"})
    assert legacy.returncode == 0, legacy.stderr[-2000:]
    assert re.search(r"^Step 1/\d+ : FROM ", legacy.stderr, re.MULTILINE), legacy.stderr
    assert not re.search(r"^#\d+ ", legacy.stderr, re.MULTILINE)
    assert "builder: legacy" in legacy.stderr
    buildkit = _build(context, name, engine_cleanup, "-v")
    assert buildkit.returncode == 0, buildkit.stderr[-2000:]
    assert "Step 1/" not in buildkit.stderr, buildkit.stderr
    assert re.search(r"^#\d+ \[(stage-0 )?1/2\] FROM ", buildkit.stderr, re.MULTILINE)
    refused = _build(
        context, name, engine_cleanup, "--secret", "id=x,env=HOME", env={"DOCKER_BUILDKIT": "0"}
    )
    assert refused.returncode == 2 and "--secret and --ssh need BuildKit" in refused.stderr


def test_a_secret_reaches_the_step_but_no_output_or_layer(
    tmp_path: Path, busybox_image: str, engine_cleanup: Any, unique: str
) -> None:
    secret = f"s3cr3t-{unique}"
    digest = hashlib.sha256(secret.encode()).hexdigest()  # the Dockerfile never holds the value
    dockerfile = (
        f"FROM {busybox_image}\n"
        "RUN --mount=type=secret,id=token,required=true "
        f'test "$(sha256sum < /run/secrets/token | cut -d" " -f1)" = "{digest}" '
        "&& echo token-ok > /ok\n"
    )
    context = _project(tmp_path / "ctx", dockerfile)
    name = f"shipit-bk-secret-{unique}"
    result = _build(
        context, name, engine_cleanup, "-v", "--secret", "id=token,env=TOKEN", env={"TOKEN": secret}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert secret not in result.stderr + result.stdout
    history = engine_cleanup.run("history", "--no-trunc", f"{name}:test").stdout
    assert secret not in history
    saved = subprocess.run(["docker", "save", f"{name}:test"], capture_output=True, check=True)
    assert secret.encode() not in saved.stdout


def _require_arm64_emulation() -> None:
    from shipit.platforms import Emulation, parse_platform

    if not Emulation.read().runs(parse_platform("linux/arm64")):
        pytest.skip("qemu-aarch64 emulation is off or missing (.ci/setup enables it)")


def test_platform_mismatch_of_the_legacy_builder_fails(
    tmp_path: Path, busybox_image: str, engine_cleanup: Any, docker_api: Any, unique: str
) -> None:
    # The legacy builder takes the local amd64 base for linux/arm64 and says nothing.
    _require_arm64_emulation()
    context = _project(tmp_path / "ctx", f"FROM {busybox_image}\nLABEL x={unique}\n")
    name = f"shipit-bk-plat-{unique}"
    result = _build(
        context, name, engine_cleanup, "--platform", "linux/arm64", env={"DOCKER_BUILDKIT": "0"}
    )
    assert result.returncode == 5, result.stderr[-2000:]
    assert "the build produced a linux/amd64 image, not the requested linux/arm64" in result.stderr
    assert f"{name}:test" not in [t for i in docker_api.images(name) for t in i["RepoTags"] or []]


def test_buildkit_builds_the_requested_platform(
    tmp_path: Path, docker_api: Any, engine_cleanup: Any, unique: str
) -> None:
    _require_arm64_emulation()
    context = _project(
        tmp_path / "ctx", "FROM scratch\nCOPY app.txt /app.txt\n", {"app.txt": unique}
    )
    name = f"shipit-bk-arm-{unique}"
    result = _build(context, name, engine_cleanup, "--platform", "linux/arm64")
    assert result.returncode == 0, result.stderr[-2000:]
    assert docker_api.inspect_image(f"{name}:test")["Architecture"] == "arm64"


def _run_in_pty(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120
) -> tuple[int, str]:
    """Run a command with stdin/stdout/stderr on a pseudo-terminal; its exit code and output."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: exec shipit
        os.chdir(cwd)
        os.execvpe(args[0], args, env)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


def test_hostile_step_text_in_the_live_view(
    tmp_path: Path, busybox_image: str, engine_cleanup: Any, unique: str
) -> None:
    dockerfile = (
        f"FROM {busybox_image}\n"
        f'RUN echo "[/dim] closing {unique}" && echo "[bold]x{unique}" && '
        "printf '\\033[91mred\\033[0m\\n' && sleep 0.5\n"
    )
    context = _project(tmp_path / "ctx", dockerfile)
    name = f"shipit-bk-pty-{unique}"
    engine_cleanup.images.append(f"{name}:test")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_ACTIONS")}
    env.update(TERM="xterm-256color", COLUMNS="200", LINES="40")
    args = [
        sys.executable,
        "-m",
        "shipit",
        "build",
        str(context),
        "--name",
        name,
        "--tag",
        "test",
        "--no-latest",
        "--no-cache",
    ]
    code, screen = _run_in_pty(args, REPO_ROOT, env)
    assert code == 0, screen[-3000:]
    assert "MarkupError" not in screen and "Traceback" not in screen
    # The step's own text, shown literally as its name: nothing parsed as rich markup.
    assert f'RUN echo "[/dim] closing {unique}" && echo "[bold]x{unique}"' in screen


def test_platform_check_after_a_legacy_build_on_the_engine(
    tmp_path: Path, busybox_image: str, engine_cleanup: Any, docker_api: Any, unique: str
) -> None:
    # The service itself, below the CLI's emulator check: no RUN step, so no emulator needed.
    import io

    from shipit.adapters.engine.client import Engine
    from shipit.config import FileConfig
    from shipit.errors import BuildError
    from shipit.output.reporter import OutputMode, Reporter
    from shipit.services.build import (
        BuildOptions,
        ImageOptions,
        build_image,
        resolve_build_settings,
    )

    context = _project(tmp_path / "ctx", f"FROM {busybox_image}\nLABEL x={unique}\n")
    name = f"shipit-bk-plat2-{unique}"
    engine_cleanup.images.append(f"{name}:test")
    options = BuildOptions(
        context=str(context),
        image=ImageOptions(name=name, tags=("test",), latest=False),
        platform="linux/arm64",
    )
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    settings = resolve_build_settings(options, FileConfig(), tmp_path, env)
    reporter = Reporter(OutputMode(), stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(BuildError) as caught:
        build_image(settings, Engine.connect(env), reporter)
    assert caught.value.message == (
        "the build produced a linux/amd64 image, not the requested linux/arm64"
    )
    assert caught.value.exit_code == 5
    tags = [t for image in docker_api.images(name) for t in image["RepoTags"] or []]
    assert f"{name}:test" not in tags  # no silent native image under the name


def test_cache_from_a_pushed_image_onto_an_empty_builder(
    tmp_path: Path, busybox_image: str, engine_cleanup: Any, docker_api: Any, unique: str
) -> None:
    # Any image shipit built is a --cache-from source (inline cache); BuildKit fetches only
    # what it reuses, shipit pulls nothing.
    from tests.support.registry import running_registry

    dockerfile = f"FROM {busybox_image}\nRUN sleep 2 && echo {unique} > /slow\n"
    context = _project(tmp_path / "ctx", dockerfile)
    name = f"shipit-bk-cf-{unique}"
    with running_registry(tmp_path / "reg") as reg:
        remote = f"{reg.address}/{name}"
        first = _build(context, name, engine_cleanup)
        assert first.returncode == 0, first.stderr[-2000:]
        docker_api.tag(f"{name}:test", remote, "test")
        for chunk in docker_api.push(remote, tag="test", stream=True, decode=True):
            assert "error" not in chunk, chunk
        for reference in (f"{name}:test", f"{remote}:test"):
            docker_api.remove_image(reference, force=True)
        engine_cleanup.run("builder", "prune", "-af")  # an empty runner
        again = _build(context, name, engine_cleanup, "--cache-from", f"{remote}:test")
        assert again.returncode == 0, again.stderr[-2000:]
    step = re.search(r"^(#\d+) \[2/2\] RUN sleep 2", again.stderr, re.MULTILINE)
    assert step and f"{step.group(1)} CACHED" in again.stderr, again.stderr
