"""smoke, run, inspect and prune on a real Docker engine; everything created is removed.

Ports are published on 127.0.0.1 only. Containers and networks shipit makes are found by
their labels afterwards, to prove nothing was left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PYTHON_IMAGE, REPO_ROOT, Cleanup, run_shipit

pytestmark = pytest.mark.integration

MANAGED = "io.shipit.managed=true"


def shipit_made(api: Any, name: str) -> tuple[list[str], list[str]]:
    """Containers and networks shipit made for the image `name` that still exist."""
    labels = [MANAGED, f"io.shipit.image={name}"]
    containers = api.containers(all=True, filters={"label": labels})
    networks = api.networks(filters={"label": labels})
    return [c["Names"][0] for c in containers], [n["Name"] for n in networks]


def docker_build(cleanup: Cleanup, tag: str, dockerfile: str, *labels: str) -> str:
    """Build a tiny image from a Dockerfile on stdin (no context); return its id."""
    args = ["docker", "build", "-q", "-t", tag]
    for label in labels:
        args += ["--label", label]
    result = subprocess.run(
        [*args, "-"], input=dockerfile, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    # Clean up by tag, not id: an identical Dockerfile elsewhere shares the cached image id,
    # and removing the id would take that image's tags too.
    cleanup.images.append(tag)
    return result.stdout.strip().splitlines()[-1]


def exists(api: Any, check: Callable[[], Any]) -> bool:
    import docker.errors

    try:
        check()
    except docker.errors.NotFound:
        return False
    return True


def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def shipit_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "shipit", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


# ---------------------------------------------------------------- smoke


def test_smoke_of_the_sample_app_is_healthy_and_leaves_nothing(
    sample_image: dict[str, Any], docker_api: Any
) -> None:
    name = sample_image["name"]
    result = run_shipit("smoke", "--json", "--name", name, "--tag", "1.2.3", timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["image"] == f"{name}:1.2.3"
    assert data["status"] == "healthy"
    assert data["health"] == "healthy"  # the sample app declares a HEALTHCHECK
    assert data["http_status"] == 200
    assert data["url"].startswith("http://127.0.0.1:") and data["url"].endswith("/health")
    assert 0 < data["seconds_to_healthy"] < 60
    # The result is printed once (here the JSON), not repeated on stderr with a URL that is
    # dead once the container is removed.
    assert "is healthy after" not in result.stderr
    print(f"sample app: healthy after {data['seconds_to_healthy']:.2f}s")
    assert shipit_made(docker_api, name) == ([], [])


def test_smoke_of_an_unhealthy_image_exits_7_with_its_log_lines(
    busybox_image: str, docker_api: Any, engine_cleanup: Cleanup, unique: str
) -> None:
    name = f"rt-unhealthy-{unique}"
    docker_build(
        engine_cleanup,
        f"{name}:1",
        f"FROM {busybox_image}\n"
        "RUN mkdir -p /www && echo ok > /www/health\n"
        "EXPOSE 8080\n"
        "HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD false\n"
        'CMD ["sh", "-c", "echo app starting; exec httpd -f -v -p 8080 -h /www"]\n',
    )
    result = run_shipit("smoke", "--name", name, "--tag", "1", "--timeout", "30")
    assert result.returncode == 7, result.stderr
    assert f"error: smoke test failed: Docker reports {name}:1 unhealthy" in result.stderr
    assert "  | [log] app starting" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert shipit_made(docker_api, name) == ([], [])


def test_smoke_of_an_image_that_exits_fails_fast(
    busybox_image: str, docker_api: Any, engine_cleanup: Cleanup, unique: str
) -> None:
    name = f"rt-exits-{unique}"
    docker_build(
        engine_cleanup,
        f"{name}:1",
        f'FROM {busybox_image}\nEXPOSE 8080\nCMD ["sh", "-c", "echo missing DATABASE_URL; exit 3"]\n',
    )
    started = time.monotonic()
    result = run_shipit("smoke", "--json", "--name", name, "--tag", "1", "--timeout", "30")
    assert result.returncode == 7, result.stderr
    assert time.monotonic() - started < 20
    assert "exited" in result.stderr
    assert "  | [log] missing DATABASE_URL" in result.stderr
    assert json.loads(result.stdout)["error"]["exit_code"] == 7  # one JSON object, the error
    assert shipit_made(docker_api, name) == ([], [])


def test_smoke_cleans_up_on_sigterm(
    busybox_image: str, docker_api: Any, engine_cleanup: Cleanup, unique: str
) -> None:
    name = f"rt-sigterm-{unique}"
    # No healthcheck and no /health (404): the smoke test would wait out its timeout.
    docker_build(
        engine_cleanup,
        f"{name}:1",
        f'FROM {busybox_image}\nRUN mkdir -p /www\nEXPOSE 8080\nCMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n',
    )
    process = shipit_process("smoke", "--name", name, "--tag", "1", "--timeout", "120")
    try:
        wait_for(lambda: bool(shipit_made(docker_api, name)[0]), 30, "the smoke container")
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert shipit_made(docker_api, name) == ([], [])


# ---------------------------------------------------------------- run


def test_run_on_a_named_network_is_reachable_by_container_name(
    sample_image: dict[str, Any],
    busybox_image: str,
    docker_api: Any,
    engine_cleanup: Cleanup,
    unique: str,
) -> None:
    name = sample_image["name"]
    network, app_name, client = f"rt-net-{unique}", f"rt-app-{unique}", f"rt-client-{unique}"
    engine_cleanup.networks.append(network)
    engine_cleanup.containers += [app_name, client]
    result = run_shipit(
        "run",
        "--json",
        "--name",
        name,
        "--tag",
        "1.2.3",
        "--network",
        network,
        "--container-name",
        app_name,
        "-e",
        "WEB_CONCURRENCY=1",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["container_name"] == app_name
    assert data["network"] == network and data["network_created"] is True

    info = docker_api.inspect_container(app_name)
    assert info["Config"]["Labels"]["io.shipit.managed"] == "true"
    assert info["Config"]["Labels"]["io.shipit.image"] == name
    assert "WEB_CONCURRENCY=1" in info["Config"]["Env"]
    (binding,) = info["HostConfig"]["PortBindings"]["5000/tcp"]
    assert binding["HostIp"] == "127.0.0.1"
    net = docker_api.inspect_network(network)
    assert net["Labels"]["io.shipit.managed"] == "true"

    # A neighbour (think: the database's side) reaches the app by its container name.
    probe = (
        f"for i in $(seq 1 60); do wget -qO- http://{app_name}:5000/health && exit 0; "
        "sleep 0.5; done; exit 1"
    )
    neighbour = engine_cleanup.run(
        "run", "--name", client, "--network", network, busybox_image, "sh", "-c", probe, check=False
    )
    assert neighbour.returncode == 0, neighbour.stderr
    assert json.loads(neighbour.stdout.strip().splitlines()[-1]) == {"status": "ok"}
    # And the host reaches it on loopback.
    with urllib.request.urlopen(data["url"] + "health", timeout=5) as response:
        assert response.status == 200

    # A second run reuses the network instead of failing or recreating it.
    again = run_shipit(
        "run", "--json", "--name", name, "--tag", "1.2.3", "--network", network, "-q"
    )
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    engine_cleanup.containers.append(second["container_name"])
    assert second["network_created"] is False


def test_run_in_the_foreground_streams_logs_and_removes_it_on_ctrl_c(
    busybox_image: str, docker_api: Any, engine_cleanup: Cleanup, unique: str
) -> None:
    name = f"rt-fg-{unique}"
    docker_build(
        engine_cleanup,
        f"{name}:1",
        f"FROM {busybox_image}\nEXPOSE 8080\n"
        'CMD ["sh", "-c", "echo ready to serve; exec httpd -f -p 8080 -h /"]\n',
    )
    network = f"rt-fg-net-{unique}"
    engine_cleanup.networks.append(network)
    process = shipit_process(
        "run", "--foreground", "--name", name, "--tag", "1", "--network", network
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # NAME ID URL
        assert first.split()[2].startswith("http://127.0.0.1:"), first
        assert process.stdout.readline().strip() == "ready to serve"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "removed" in stderr
    assert shipit_made(docker_api, name) == ([], [])


# ---------------------------------------------------------------- inspect


def test_inspect_compares_multi_and_single_stage(
    sample_image: dict[str, Any], docker_api: Any, engine_cleanup: Cleanup, unique: str
) -> None:
    single = f"rt-single-{unique}"
    built = run_shipit(
        "build",
        "--json",
        "-q",
        "-f",
        "sample_app/Dockerfile.single",
        "--name",
        single,
        "--no-latest",
        "-t",
        "1",
        "--build-arg",
        f"PYTHON_IMAGE={PYTHON_IMAGE}",
    )
    assert built.returncode == 0, built.stderr
    engine_cleanup.images += json.loads(built.stdout)["tags"]
    multi = f"{sample_image['name']}:1.2.3"

    result = run_shipit("inspect", "--json", multi, "--compare", f"{single}:1")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    a, b = data["image"], data["compare"]
    assert a["size_bytes"] == docker_api.inspect_image(multi)["Size"]
    assert b["size_bytes"] == docker_api.inspect_image(f"{single}:1")["Size"]
    assert data["difference_bytes"] == a["size_bytes"] - b["size_bytes"]
    assert data["difference_mb"] == round(data["difference_bytes"] / 1e6, 2)
    assert a["user"] == "10001:10001" and b["user"] is None
    assert a["exposed_ports"] == ["5000/tcp"] == b["exposed_ports"]
    assert a["healthcheck"].startswith('CMD ["/opt/venv/bin/python"') and b["healthcheck"] is None
    assert a["labels"]["io.shipit.image"] == sample_image["name"]
    instructions = [layer["instruction"] for layer in a["layers"]]
    assert instructions[-1].startswith("LABEL ") or instructions[-1].startswith("CMD ")
    assert any(i.startswith("COPY ") and "/opt/venv" in i for i in instructions)
    assert not any("#(nop)" in i for i in instructions)
    assert any(
        i.startswith("RUN ") and "pip install" in i for i in (x["instruction"] for x in b["layers"])
    )
    print(f"multi-stage vs single-stage: {data['difference_mb']:+.2f} MB")

    plain = run_shipit("inspect", multi, "--compare", f"{single}:1")
    assert plain.returncode == 0, plain.stderr
    assert "MB smaller than" in plain.stdout or "MB larger than" in plain.stdout
    assert plain.stdout.startswith("image ")

    missing = run_shipit("inspect", f"rt-missing-{unique}:1")
    assert missing.returncode == 2
    assert "run 'shipit build' first" in missing.stderr


# ---------------------------------------------------------------- prune


def test_prune_keeps_the_newest_builds_and_never_touches_anything_else(
    busybox_image: str, docker_api: Any, engine_cleanup: Cleanup, unique: str, tmp_path: Path
) -> None:
    name = f"rt-prune-{unique}"
    label = f"io.shipit.image={name}"

    def build(tag: str, content: str, *labels: str) -> str:
        return docker_build(
            engine_cleanup,
            tag,
            f'FROM {busybox_image}\nRUN echo {content} > /build\nCMD ["sleep", "300"]\n',
            *labels,
        )

    builds = [build(f"{name}:b{i}", f"{unique}-{i}", label) for i in range(1, 5)]
    docker_api.tag(builds[0], name, "old-extra")
    # A build whose tag moved on: the first NAME:tmp becomes a dangling image of ours.
    dangling = build(f"{name}:tmp", f"{unique}-tmp-1", label)
    engine_cleanup.images.append(dangling)  # unique content: safe to remove by id
    build(f"{name}:tmp", f"{unique}-tmp-2", label)
    # Things prune must leave alone: another shipit image, an untagged copy of busybox,
    # an unlabelled container and network.
    other = build(
        f"rt-prune-other-{unique}:1", f"{unique}-other", f"io.shipit.image=other-{unique}"
    )
    engine_cleanup.run("tag", busybox_image, f"unrelated-{unique}:1")
    engine_cleanup.images.append(f"unrelated-{unique}:1")
    engine_cleanup.containers.append(f"unrelated-{unique}")
    engine_cleanup.run("create", "--name", f"unrelated-{unique}", busybox_image, "true")
    engine_cleanup.networks.append(f"unrelated-{unique}")
    engine_cleanup.run("network", "create", f"unrelated-{unique}")
    # And things shipit made that should go: a stopped container and its unused network.
    stopped, network = f"rt-prune-stopped-{unique}", f"rt-prune-net-{unique}"
    engine_cleanup.containers.append(stopped)
    engine_cleanup.networks.append(network)
    started = run_shipit(
        "run", "--name", name, "--tag", "b4", "--port", "80", "--network", network,
        "--container-name", stopped,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    docker_api.stop(stopped, timeout=1)

    def image_exists(ref: str) -> bool:
        return exists(docker_api, lambda: docker_api.inspect_image(ref))

    plan = run_shipit("prune", "--json", "--name", name, "--keep", "3")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["dry_run"] is True
    assert [i["id"] for i in planned["plan"]["images"]] == [builds[1], builds[0]]
    assert [i["id"] for i in planned["plan"]["kept"]] == [
        docker_api.inspect_image(f"{name}:tmp")["Id"],
        builds[3],
        builds[2],
    ]
    assert [i["id"] for i in planned["plan"]["dangling"]] == [dangling]
    assert stopped in [c["name"] for c in planned["plan"]["containers"]]
    assert network in [n["name"] for n in planned["plan"]["networks"]]
    # Without --yes nothing changed.
    assert all(image_exists(i) for i in (*builds, dangling))
    assert exists(docker_api, lambda: docker_api.inspect_container(stopped))

    result = run_shipit("prune", "--json", "--yes", "--name", name, "--keep", "3")
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    assert f"tag {name}:b1" in done["removed"] and f"tag {name}:old-extra" in done["removed"]
    assert done["skipped"] == []

    assert not image_exists(builds[0]) and not image_exists(builds[1])
    assert not image_exists(dangling)
    assert image_exists(f"{name}:b3") and image_exists(f"{name}:b4") and image_exists(f"{name}:tmp")
    assert not exists(docker_api, lambda: docker_api.inspect_container(stopped))
    assert not exists(docker_api, lambda: docker_api.inspect_network(network))
    # Everything that is not shipit's (or not this image's) survived.
    assert image_exists(other)
    assert image_exists(f"unrelated-{unique}:1")
    assert image_exists(busybox_image)
    assert image_exists(PYTHON_IMAGE)
    assert exists(docker_api, lambda: docker_api.inspect_container(f"unrelated-{unique}"))
    assert exists(docker_api, lambda: docker_api.inspect_network(f"unrelated-{unique}"))
