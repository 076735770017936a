"""`shipit build` of the sample app on a real Docker engine, and the container it makes."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
import urllib.request
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, head, run_shipit

pytestmark = pytest.mark.integration


def _get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


def _wait_http(url: str, deadline: float) -> tuple[int, str]:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return _get(url)
        except Exception as exc:  # not up yet
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer: {last}")


def test_build_tags_follow_the_rules(sample_image: dict[str, Any]) -> None:
    name = sample_image["name"]
    sha = head(REPO_ROOT)[:7]
    assert sample_image["tags"] == [
        f"{name}:1.2.3",
        f"{name}:1.2",
        f"{name}:1",
        f"{name}:latest",
        f"{name}:sha-{sha}",
    ]
    assert sample_image["image_id"].startswith("sha256:")
    assert sample_image["size_bytes"] > 0


def test_build_json_keeps_stdout_to_one_object(sample_image: dict[str, Any]) -> None:
    # The fixture parsed stdout as one JSON object; BuildKit's progress went to stderr.
    assert re.search(r"^#\d+ \[builder 1/\d+\] FROM ", sample_image["stderr"], re.MULTILINE)


def test_image_has_labels_user_and_healthcheck(
    sample_image: dict[str, Any], docker_api: Any
) -> None:
    for ref in sample_image["tags"]:
        assert docker_api.inspect_image(ref)["Id"] == sample_image["image_id"]
    config = docker_api.inspect_image(sample_image["image_id"])["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.revision"] == head(REPO_ROOT)
    assert labels["org.opencontainers.image.version"] == "1.2.3"
    assert labels["org.opencontainers.image.title"] == sample_image["name"]
    assert labels["org.opencontainers.image.created"].endswith("Z")
    user = config["User"]
    assert user and user.split(":")[0] not in {"0", "root"}
    assert config["Healthcheck"]["Test"][0] in {"CMD", "CMD-SHELL"}
    assert "5000/tcp" in config["ExposedPorts"]


def test_container_serves_and_reports_healthy(
    sample_image: dict[str, Any], docker_api: Any, engine_cleanup: Any
) -> None:
    container = docker_api.create_container(
        sample_image["image_id"],
        ports=[5000],
        host_config=docker_api.create_host_config(port_bindings={5000: ("127.0.0.1", None)}),
        labels={"shipit.test": "1"},
    )
    engine_cleanup.containers.append(container["Id"])
    docker_api.start(container["Id"])
    port = docker_api.port(container["Id"], 5000)[0]["HostPort"]
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    status, body = _wait_http(f"{base}/health", deadline)
    assert status == 200
    status, body = _get(f"{base}/")
    assert status == 200 and "Hello" in body
    version = json.loads(_get(f"{base}/version")[1])
    assert version["version"] == "1.2.3"
    assert version["revision"] == head(REPO_ROOT)
    uid = docker_api.exec_start(docker_api.exec_create(container["Id"], ["id", "-u"]))
    assert uid.decode().strip() not in {"", "0"}
    while time.monotonic() < deadline:
        health = docker_api.inspect_container(container["Id"])["State"]["Health"]["Status"]
        if health == "healthy":
            break
        assert health != "unhealthy"
        time.sleep(0.5)
    assert health == "healthy"


def test_failing_run_step_exits_5(tmp_path: Any, busybox_image: str, engine_cleanup: Any) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {busybox_image}\nRUN echo about to fail && echo oops-output && false\n"
    )
    result = run_shipit("build", str(tmp_path), "--name", "shipit-it-fail")
    assert result.returncode == 5, result.stderr
    assert "RUN echo about to fail" in result.stderr
    assert "oops-output" in result.stderr
    assert "Traceback" not in result.stderr


def test_dockerfile_syntax_error_exits_2(tmp_path: Any, docker_api: Any) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nRUNN nothing\n")
    result = run_shipit("build", str(tmp_path), "--name", "shipit-it-syntax")
    assert result.returncode == 2, result.stderr  # README: a Dockerfile syntax error is input
    assert "RUNN" in result.stderr
    assert "Traceback" not in result.stderr


def test_scratch_build_with_version(tmp_path: Any, docker_api: Any, engine_cleanup: Any) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /\n")
    (tmp_path / "hello.txt").write_text("hi\n")
    result = run_shipit(
        "build", str(tmp_path), "--name", "shipit-it-scratch", "--version", "1.2.3-rc.1", "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    engine_cleanup.images.extend(data["tags"])
    assert data["tags"] == ["shipit-it-scratch:1.2.3-rc.1", "shipit-it-scratch:latest"]


def test_rebuild_reuses_layers_of_an_earlier_build(
    tmp_path: Any, docker_api: Any, engine_cleanup: Any, unique: str
) -> None:
    # Like `docker build`, building content again reuses its cached layers even after the tag
    # named another build: BuildKit reports the step CACHED, and the layer is the same.
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /\n")
    layers, cached = [], []
    for content in ("one", "two", "one"):
        (tmp_path / "hello.txt").write_text(f"{content} {unique}\n")
        result = run_shipit("build", str(tmp_path), "--name", "shipit-it-reuse", "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        engine_cleanup.images.extend([data["image_id"], *data["tags"]])
        layers.append(docker_api.inspect_image(data["image_id"])["RootFS"]["Layers"])
        step = re.search(r"^(#\d+) \[1/1\] COPY hello.txt /$", result.stderr, re.MULTILINE)
        assert step, result.stderr
        cached.append(f"{step.group(1)} CACHED" in result.stderr)
    assert layers[0] != layers[1] and layers[2] == layers[0]
    assert cached == [False, False, True]


def test_rebuild_of_unchanged_sources_is_the_same_image(
    tmp_path: Any, docker_api: Any, engine_cleanup: Any, unique: str
) -> None:
    # The created label comes from the sources (here: the newest file, outside git), not the
    # clock, so an unchanged context rebuilds to the very same image from the cache.
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /\n")
    (tmp_path / "hello.txt").write_text(f"{unique}\n")
    os.utime(tmp_path / "hello.txt", (1_700_000_000, 1_700_000_000))
    os.utime(tmp_path / "Dockerfile", (1_600_000_000, 1_600_000_000))
    ids = []
    for attempt in range(2):
        if attempt:
            time.sleep(1.1)  # the clock moves on; the label must not
        result = run_shipit("build", str(tmp_path), "--name", "shipit-it-same", "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        engine_cleanup.images.extend([data["image_id"], *data["tags"]])
        ids.append(data["image_id"])
    assert ids[0] == ids[1]
    labels = docker_api.inspect_image(ids[0])["Config"]["Labels"]
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"  # hello.txt


def _file_in_image(docker_api: Any, image: str, path: str) -> bytes:
    container = docker_api.create_container(image, command=["true"])
    try:
        stream, _ = docker_api.get_archive(container["Id"], path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            assert member is not None
            return member.read()
    finally:
        docker_api.remove_container(container["Id"], force=True)


def test_no_cache_runs_the_builder_stage_once_per_build(
    tmp_path: Any, docker_api: Any, engine_cleanup: Any, busybox_image: str, unique: str
) -> None:
    # The builder stage writes a random token: the runtime image must carry the token of the
    # builder image of the same build (not a second run of the stage), and --no-cache builds
    # must not share one.
    (tmp_path / "Dockerfile").write_text(
        f"FROM {busybox_image} AS builder\n"
        "RUN cat /proc/sys/kernel/random/uuid > /token\n"
        f"FROM {busybox_image}\n"
        "COPY --from=builder /token /token\n"
    )
    name = f"shipit-it-nocache-{unique}"
    tokens = []
    for _ in range(2):
        result = run_shipit("build", str(tmp_path), "--name", name, "--no-cache", "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        engine_cleanup.track(data["image_id"], *data["tags"], f"{name}:buildcache")
        final = _file_in_image(docker_api, data["image_id"], "/token")
        assert final == _file_in_image(docker_api, f"{name}:buildcache", "/token")
        tokens.append(final)
    assert tokens[0] != tokens[1]
