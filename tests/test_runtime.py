"""smoke, run, inspect and prune against the fake engine: options, plans, reports, failures."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipit.adapters.engine.client import Engine
from shipit.cli import app
from shipit.cli.wiring import Clients
from shipit.errors import EngineUnavailableError, UsageError
from shipit.model import Comparison, ImageReport, Layer
from shipit.output.inspect import format_comparison, format_report, render_tables
from shipit.output.reporter import OutputMode, Reporter
from shipit.services import smoke as smoke_module
from shipit.services.containers import repository_of
from shipit.services.inspect import clean_instruction, format_healthcheck, inspect_image
from shipit.services.prune import apply_prune, plan_prune
from shipit.services.run import RunOptions, follow_container, start_container
from shipit.services.smoke import SmokeTestFailed, smoke_test
from tests.fakes import FakeAPI

runner = CliRunner()
MANAGED = {"io.shipit.managed": "true"}


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps (or a probe takes time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.01)


def make_reporter(**mode: bool) -> tuple[Reporter, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Reporter(OutputMode(**mode), stdout=out, stderr=err), out, err


def leftovers(api: FakeAPI) -> tuple[list[str], list[str]]:
    """Containers and networks still on the fake engine (the default bridge aside)."""
    return (
        [c["Name"] for c in api.containers_db.values()],
        [n["Name"] for n in api.networks_db.values() if n["Name"] != "bridge"],
    )


def answering(*statuses: int | None) -> Any:
    """A probe that answers these HTTP statuses in turn (the last one from then on)."""
    queue = list(statuses)

    def probe(url: str, timeout: float) -> int | None:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return probe


@pytest.fixture
def api() -> FakeAPI:
    fake = FakeAPI()
    fake.add_image("demo:latest")
    return fake


def smoke(api: FakeAPI, clock: FakeClock | None = None, **kwargs: Any) -> Any:
    clock = clock or FakeClock()
    reporter, _, err = make_reporter(verbose=True)  # the service's own line is a detail
    kwargs.setdefault("probe", answering(200))
    kwargs.setdefault("timeout", 10.0)
    result = smoke_test(
        Engine(api), reporter, "demo:latest", clock=clock, sleep=clock.sleep, **kwargs
    )
    return result, err.getvalue()


# ---------------------------------------------------------------- smoke test


def test_smoke_passes_when_http_and_healthcheck_are_healthy_and_removes_everything(
    api: FakeAPI,
) -> None:
    # One state per inspect: the check right after start, then one per poll.
    api.health_script = ["starting", "starting", "starting", "healthy"]
    result, err = smoke(api, probe=answering(None, 200))
    assert result.health == "healthy"
    assert result.http_status == 200
    assert result.url == "http://127.0.0.1:32768/health"
    assert result.seconds_to_healthy == pytest.approx(0.5)
    assert result.as_json() == {
        "image": "demo:latest",
        "url": "http://127.0.0.1:32768/health",
        "status": "healthy",
        "seconds_to_healthy": 0.5,
        "http_status": 200,
        "health": "healthy",
    }
    assert "healthy after 0.5s" in err
    assert leftovers(api) == ([], [])


def test_smoke_message_and_json_show_the_same_seconds(api: FakeAPI) -> None:
    # 5.449632 s rounds to 5.4 directly but to 5.45 (then 5.5) through the JSON's 3 decimals.
    api.images[next(iter(api.images))]["Config"]["Healthcheck"] = {"Test": ["NONE"]}
    clock = FakeClock()

    def slow_probe(url: str, timeout: float) -> int | None:
        clock.now += 5.449632
        return 200

    result, err = smoke(api, clock=clock, probe=slow_probe)
    shown = result.as_json()["seconds_to_healthy"]
    assert shown == 5.45
    assert f"is healthy after {shown:.1f}s" in err


def test_smoke_starts_on_a_fresh_labelled_network_with_a_loopback_port(api: FakeAPI) -> None:
    api.health_script = ["healthy"]
    smoke(api, env={"MODE": "test"})
    (_, (network,), net_kwargs) = next(c for c in api.calls if c[0] == "create_network")
    assert network.startswith("shipit-smoke-")
    assert net_kwargs["labels"] == {**MANAGED, "io.shipit.image": "demo"}
    assert net_kwargs["driver"] == "bridge"
    (_, _, kwargs) = next(c for c in api.calls if c[0] == "create_container")
    assert kwargs["labels"] == {**MANAGED, "io.shipit.image": "demo"}
    assert kwargs["environment"] == {"MODE": "test"}
    host_config = kwargs["host_config"]
    assert host_config["network_mode"] == network
    # 127.0.0.1::5000 -- loopback only, and Docker picks the host port.
    assert host_config["port_bindings"] == {"5000/tcp": ("127.0.0.1", None)}


def test_smoke_without_healthcheck_needs_only_http_200(api: FakeAPI) -> None:
    api.images[next(iter(api.images))]["Config"]["Healthcheck"] = {"Test": ["NONE"]}
    result, _ = smoke(api)
    assert result.health is None


def test_smoke_fails_with_exit_7_and_log_lines_when_docker_reports_unhealthy(
    api: FakeAPI,
) -> None:
    api.health_script = ["starting", "unhealthy"]
    api.log_lines = [f"line {i}" for i in range(30)]
    with pytest.raises(SmokeTestFailed) as caught:
        smoke(api)
    error = caught.value
    assert error.exit_code == 7
    assert "Docker reports demo:latest unhealthy" in error.message
    logs = [d for d in error.details if d.startswith("[log]")]
    assert logs == [f"[log] line {i}" for i in range(10, 30)]  # the last 20
    assert "[last health probe] probe unhealthy" in error.details
    assert leftovers(api) == ([], [])


def test_smoke_times_out_when_the_path_keeps_answering_404(api: FakeAPI) -> None:
    api.health_script = ["healthy"]
    clock = FakeClock()
    with pytest.raises(SmokeTestFailed) as caught:
        smoke(api, clock=clock, probe=answering(404), timeout=3.0)
    assert "not healthy within 3s" in caught.value.message
    assert "answered 404" in caught.value.message
    assert clock.now - 1000.0 == pytest.approx(3.0, abs=0.3)
    assert leftovers(api) == ([], [])


def test_smoke_times_out_when_the_healthcheck_never_passes(api: FakeAPI) -> None:
    api.health_script = ["starting"]
    with pytest.raises(SmokeTestFailed) as caught:
        smoke(api, timeout=2.0)
    assert "healthcheck still says 'starting'" in caught.value.message


def test_smoke_fails_when_the_container_exits(api: FakeAPI) -> None:
    api.exit_code = 3
    api.log_lines = ["Traceback (most recent call last):", "ModuleNotFoundError: flask"]
    with pytest.raises(SmokeTestFailed) as caught:
        smoke(api)
    assert "exited" in caught.value.message
    assert "[log] ModuleNotFoundError: flask" in caught.value.details
    assert leftovers(api) == ([], [])


def test_smoke_fails_when_the_engine_cannot_start_the_image(api: FakeAPI) -> None:
    api.start_error = api._api_error(400, 'exec: "gunicorn": executable file not found')
    with pytest.raises(SmokeTestFailed) as caught:
        smoke(api)
    assert "did not start" in caught.value.message
    assert "executable file not found" in caught.value.message
    assert leftovers(api) == ([], [])


def test_smoke_cleans_up_when_interrupted(api: FakeAPI) -> None:
    """Ctrl-C and SIGTERM (which the CLI turns into KeyboardInterrupt) still clean up."""

    def interrupted(url: str, timeout: float) -> int | None:
        assert leftovers(api) != ([], [])  # the container and network exist now
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        smoke(api, probe=interrupted)
    assert leftovers(api) == ([], [])


@pytest.mark.parametrize(
    ("ports", "port", "expected"),
    [
        ({"5000/tcp": {}}, None, 5000),
        ({"5000/tcp": {}, "9000/tcp": {}}, 9000, 9000),
        ({"53/udp": {}, "8080/tcp": {}}, None, 8080),
    ],
)
def test_smoke_port_comes_from_the_single_expose_or_port(
    api: FakeAPI, ports: dict[str, Any], port: int | None, expected: int
) -> None:
    api.images[next(iter(api.images))]["Config"]["ExposedPorts"] = ports
    api.health_script = ["healthy"]
    result, _ = smoke(api, port=port)
    (_, _, kwargs) = next(c for c in api.calls if c[0] == "create_container")
    assert kwargs["ports"] == [(expected, "tcp")]
    assert result.url.endswith("/health")


@pytest.mark.parametrize("ports", [{}, {"5000/tcp": {}, "9000/tcp": {}}])
def test_smoke_asks_for_port_when_the_image_exposes_none_or_several(
    api: FakeAPI, ports: dict[str, Any]
) -> None:
    api.images[next(iter(api.images))]["Config"]["ExposedPorts"] = ports
    with pytest.raises(UsageError, match="pass --port"):
        smoke(api)
    assert not any(c[0] in ("create_network", "create_container") for c in api.calls)


def test_smoke_of_a_missing_image_says_build_it(api: FakeAPI) -> None:
    reporter, _, _ = make_reporter()
    with pytest.raises(UsageError, match="run 'shipit build'"):
        smoke_test(Engine(api), reporter, "nothere:1")


# ---------------------------------------------------------------- smoke CLI


def test_smoke_cli_json_is_one_object(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.add_image("demo:latest")
    fake_api.health_script = ["healthy"]
    monkeypatch.setattr(smoke_module, "probe_http", answering(200))
    result = runner.invoke(app, ["smoke", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "healthy" and data["image"] == "demo:latest"
    assert data["health"] == "healthy" and data["http_status"] == 200
    assert "is healthy after" not in result.stderr  # the result is printed once: --json's


def test_smoke_cli_uses_the_push_selection(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.add_image("other:edge")
    fake_api.health_script = ["healthy"]
    monkeypatch.setattr(smoke_module, "probe_http", answering(200))
    result = runner.invoke(app, ["smoke", "--name", "other", "--tag", "edge", "--path", "ready"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("healthy other:edge in ")
    assert "/ready" in result.stdout


def test_smoke_cli_exits_7_with_log_lines(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.add_image("demo:latest")
    fake_api.health_script = ["unhealthy"]
    fake_api.log_lines = ["booting", "crashed: no database"]
    monkeypatch.setattr(smoke_module, "probe_http", answering(500))
    result = runner.invoke(app, ["smoke"])
    assert result.exit_code == 7, result.output
    assert "  | [log] crashed: no database" in result.stderr
    assert "error: smoke test failed: Docker reports demo:latest unhealthy" in result.stderr
    assert "Traceback" not in result.output
    assert leftovers(fake_api) == ([], [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["smoke", "--env", "NOVALUE"], "--env 'NOVALUE' must be KEY=VALUE"),
        (["smoke", "--name", "Bad Name"], "invalid image name"),
        (["smoke", "--timeout", "0"], "Invalid value for '--timeout'"),
        (["smoke", "--port", "70000"], "Invalid value for '--port'"),
        (["run", "--container-name", "-x"], "invalid --container-name"),
        (["run", "--network", "host"], "one of Docker's own networks"),
        (["run", "--publish", "0"], "Invalid value for '--publish'"),
        (["prune", "--keep", "-1"], "Invalid value for '--keep'"),
        (["inspect", "nothere:1"], "run 'shipit build' first"),
    ],
)
def test_bad_input_exits_2(project: Path, fake_api: FakeAPI, args: list[str], message: str) -> None:
    fake_api.add_image("demo:latest")
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["smoke", "run", "inspect", "prune"])
def test_unreachable_engine_exits_4(project: Path, clients: Clients, command: str) -> None:
    def refuse(env: Any, timeout: float = 60.0) -> Engine:
        raise EngineUnavailableError("cannot reach the Docker engine at unix:///nowhere")

    clients.engine = refuse
    result = runner.invoke(app, [command])
    assert result.exit_code == 4, result.output
    assert "error: cannot reach the Docker engine" in result.stderr


# ---------------------------------------------------------------- run


def test_run_creates_a_labelled_network_and_publishes_on_loopback(api: FakeAPI) -> None:
    reporter, _, err = make_reporter()
    result = start_container(
        Engine(api),
        reporter,
        RunOptions(
            image="demo:latest",
            network="app-net",
            container_name="web",
            publish=8080,
            env={"DATABASE_HOST": "db"},
        ),
    )
    assert result.network_created is True
    assert result.url == "http://127.0.0.1:8080/"
    assert result.container_name == "web"
    network = next(n for n in api.networks_db.values() if n["Name"] == "app-net")
    assert network["Labels"] == {**MANAGED, "io.shipit.image": "demo"}
    (_, (image,), kwargs) = next(c for c in api.calls if c[0] == "create_container")
    assert image == "demo:latest"
    assert kwargs["host_config"]["port_bindings"] == {"5000/tcp": ("127.0.0.1", 8080)}
    assert kwargs["labels"] == {**MANAGED, "io.shipit.image": "demo"}
    assert kwargs["environment"] == {"DATABASE_HOST": "db"}
    assert "started web" in err.getvalue()


def test_run_reuses_an_existing_network_without_relabelling_it(api: FakeAPI) -> None:
    api.create_network("shared", driver="bridge", labels={})
    reporter, _, _ = make_reporter()
    result = start_container(
        Engine(api), reporter, RunOptions(image="demo:latest", network="shared")
    )
    assert result.network_created is False
    assert result.container_name.startswith("demo-")
    assert sum(1 for c in api.calls if c[0] == "create_network") == 1


def test_run_with_a_taken_host_port_exits_2_and_leaves_nothing(api: FakeAPI) -> None:
    api.start_error = api._api_error(
        500,
        "driver failed programming external connectivity on endpoint web: "
        "Bind for 127.0.0.1:8080 failed: port is already allocated",
    )
    reporter, _, _ = make_reporter()
    with pytest.raises(UsageError, match="host port is already in use"):
        start_container(
            Engine(api), reporter, RunOptions(image="demo:latest", network="n1", publish=8080)
        )
    assert leftovers(api) == ([], [])


def test_run_with_a_taken_container_name_keeps_the_existing_container(api: FakeAPI) -> None:
    reporter, _, _ = make_reporter()
    engine = Engine(api)
    start_container(
        engine, reporter, RunOptions(image="demo:latest", network="n", container_name="web")
    )
    with pytest.raises(UsageError, match="already in use"):
        start_container(
            engine, reporter, RunOptions(image="demo:latest", network="n", container_name="web")
        )
    assert leftovers(api) == (["/web"], ["n"])


def test_run_foreground_shows_logs_then_removes_the_container_and_its_network(
    api: FakeAPI,
) -> None:
    api.log_lines = ["[INFO] Listening at: http://0.0.0.0:5000", "GET /health 200"]
    reporter, _, _ = make_reporter()
    engine = Engine(api)
    result = start_container(engine, reporter, RunOptions(image="demo:latest", network="fg"))
    shown: list[str] = []
    follow_container(engine, reporter, result, shown.append)
    assert shown == api.log_lines
    assert leftovers(api) == ([], [])


def test_run_foreground_leaves_a_network_others_still_use(api: FakeAPI) -> None:
    reporter, _, _ = make_reporter()
    engine = Engine(api)
    first = start_container(engine, reporter, RunOptions(image="demo:latest", network="shared"))
    start_container(engine, reporter, RunOptions(image="demo:latest", network="shared"))
    follow_container(engine, reporter, first, lambda line: None)
    containers, networks = leftovers(api)
    assert len(containers) == 1 and networks == ["shared"]


def test_run_cli_detached_prints_name_id_and_url(project: Path, fake_api: FakeAPI) -> None:
    fake_api.add_image("demo:latest")
    result = runner.invoke(app, ["run", "--container-name", "web", "--network", "app-net"])
    assert result.exit_code == 0, result.output
    name, short_id, url = result.stdout.split()
    assert name == "web" and len(short_id) == 12 and url.startswith("http://127.0.0.1:")
    assert leftovers(fake_api) == (["/web"], ["app-net"])


def test_run_cli_json_defaults_the_network_to_name_net(project: Path, fake_api: FakeAPI) -> None:
    fake_api.add_image("demo:latest")
    result = runner.invoke(app, ["run", "--json", "-e", "A=1", "--publish", "18080"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["network"] == "demo-net" and data["network_created"] is True
    assert data["host_port"] == 18080 and data["container_port"] == 5000
    assert data["detached"] is True


# ---------------------------------------------------------------- inspect


@pytest.mark.parametrize(
    ("created_by", "instruction"),
    [
        ("/bin/sh -c #(nop)  EXPOSE 5000", "EXPOSE 5000"),
        ("/bin/sh -c #(nop) COPY dir:abc in /opt/venv ", "COPY dir:abc in /opt/venv"),
        ("/bin/sh -c python3 -m venv /opt/venv", "RUN python3 -m venv /opt/venv"),
        ("|2 APP_REVISION=abc APP_VERSION=1.0 /bin/sh -c pip install x", "RUN pip install x"),
        ("RUN /bin/sh -c apt-get update # buildkit", "RUN /bin/sh -c apt-get update"),
        ("", "(no history: base image layer)"),
    ],
)
def test_history_instructions_are_cleaned(created_by: str, instruction: str) -> None:
    assert clean_instruction(created_by) == instruction


def test_healthcheck_is_shown_as_a_dockerfile_would_say_it() -> None:
    check = {
        "Test": ["CMD", "python", "-c", "print(1)"],
        "Interval": 5_000_000_000,
        "Timeout": 3_000_000_000,
        "Retries": 3,
    }
    assert format_healthcheck(check) == (
        'CMD ["python", "-c", "print(1)"] (every 5s, timeout 3s, 3 retries)'
    )
    assert format_healthcheck({"Test": ["CMD-SHELL", "curl -f localhost"]}) == (
        "CMD curl -f localhost"
    )
    assert format_healthcheck({"Test": ["NONE"]}) == "disabled"
    assert format_healthcheck(None) is None


def report(reference: str, size: int, *, user: str = "") -> ImageReport:
    return ImageReport(
        reference=reference,
        id="sha256:" + "b" * 64,
        size=size,
        created="2024-05-01T10:00:00Z",
        user=user,
        exposed_ports=("5000/tcp",),
        healthcheck=None,
        labels={"io.shipit.image": reference.split(":")[0]},
        layers=(Layer(150_000_000, "(no history: base image layer)"), Layer(0, "EXPOSE 5000")),
    )


def test_compare_reports_the_size_difference_in_mb() -> None:
    comparison = Comparison(report("multi:1", 200_000_000), report("single:1", 1_000_000_000))
    assert comparison.difference_bytes == -800_000_000
    assert comparison.difference_mb == -800.0
    assert comparison.percent == -80.0
    assert comparison.summary() == (
        "multi:1 is 800.00 MB smaller than single:1 (200.0 MB vs 1000.0 MB, 80.0% smaller)"
    )
    assert Comparison(report("a:1", 5), report("b:1", 5)).summary().endswith("same size (0.0 MB)")
    data = comparison.as_json()
    assert data["difference_mb"] == -800.0 and data["difference_percent"] == -80.0
    assert data["image"]["size_mb"] == 200.0 and data["compare"]["image"] == "single:1"


def test_plain_report_lists_layers_in_build_order() -> None:
    lines = format_report(report("multi:1", 200_000_000, user="10001:10001"))
    assert "size         200.0 MB" in lines
    assert "user         10001:10001" in lines
    assert lines[-2:] == [" 150.0 MB  (no history: base image layer)", "      0 B  EXPOSE 5000"]


def test_plain_comparison_is_side_by_side_with_the_difference() -> None:
    lines = format_comparison(
        Comparison(report("multi:1", 2_000_000), report("single:1", 3_000_000))
    )
    size_line = next(line for line in lines if line.startswith("size"))
    assert "2.0 MB" in size_line and size_line.rstrip().endswith("3.0 MB")
    user_line = next(line for line in lines if line.startswith("user"))
    assert user_line.count("root (no USER)") == 2
    assert "multi:1 is 1.00 MB smaller than single:1" in "\n".join(lines)
    assert "layers of single:1:" in lines


def test_rich_tables_fit_the_terminal_width() -> None:
    long = report("multi:1", 1)
    long = ImageReport(**{**long.__dict__, "layers": (Layer(1, "RUN " + "x" * 500),)})
    text = render_tables([long], None, 80)
    assert "layers of multi:1" in text
    assert "…" in text


def test_inspect_reads_size_user_ports_healthcheck_labels_and_history(api: FakeAPI) -> None:
    image_id = next(iter(api.images))
    api.images[image_id]["Config"]["Labels"] = {"io.shipit.image": "demo"}
    api.histories[image_id] = [
        {"CreatedBy": '/bin/sh -c #(nop)  CMD ["app"]', "Size": 0},
        {"CreatedBy": "/bin/sh -c pip install flask", "Size": 7_000_000},
        {"CreatedBy": "", "Size": 190_000_000},
    ]
    result = inspect_image(Engine(api), "demo:latest")
    assert result.user == "10001:10001"
    assert result.exposed_ports == ("5000/tcp",)
    assert result.healthcheck == 'CMD ["true"]'
    assert [x.instruction for x in result.layers] == [
        "(no history: base image layer)",
        "RUN pip install flask",
        'CMD ["app"]',
    ]


def test_inspect_cli_compare_json(project: Path, fake_api: FakeAPI) -> None:
    fake_api.add_image("demo:latest", size=200_000_000)
    fake_api.add_image("demo-single:latest", size=1_100_000_000)
    result = runner.invoke(app, ["inspect", "--json", "--compare", "demo-single:latest"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["image"]["image"] == "demo:latest"
    assert data["difference_mb"] == -900.0


def test_inspect_cli_plain_text_when_not_a_terminal(project: Path, fake_api: FakeAPI) -> None:
    fake_api.add_image("demo:latest")
    result = runner.invoke(app, ["inspect"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "image        demo:latest"


# ---------------------------------------------------------------- prune

NAME = "demo"
OURS = {"io.shipit.image": NAME}


def build(
    api: FakeAPI, n: int, tags: list[str], created: str, labels: dict[str, str] = OURS
) -> str:
    image_id = "sha256:" + str(n) * 64
    api.add_runtime_image(image_id, tags, labels=labels, created=created)
    return image_id


@pytest.fixture
def builds(api: FakeAPI) -> FakeAPI:
    """Five builds of demo (two within one second), plus things prune must never touch."""
    api.images.clear()
    build(api, 1, ["demo:1.0.0", "demo:sha-1111111"], "2024-05-01T10:00:00.5Z")
    build(api, 2, ["demo:1.1.0"], "2024-05-02T10:00:00Z")
    build(api, 3, ["demo:sha-3333333"], "2024-05-03T10:00:00.100000001Z")
    build(api, 4, ["demo:sha-4444444"], "2024-05-03T10:00:00.9Z")  # same second as 3
    build(api, 5, ["demo:latest", "demo:sha-5555555"], "2024-05-04T10:00:00Z")
    build(api, 6, ["demo:buildcache"], "2024-04-01T00:00:00Z")  # the builder-stage cache
    build(api, 7, [], "2024-04-02T00:00:00Z")  # a dangling old build of demo
    build(api, 8, ["other:1"], "2024-01-01T00:00:00Z", {"io.shipit.image": "other"})
    build(api, 9, [], "2024-01-01T00:00:00Z", {"io.shipit.image": "other"})  # dangling, other
    build(api, 10, ["shipit.local/busybox:latest"], "2023-01-01T00:00:00Z", {})
    build(api, 11, [], "2023-01-01T00:00:00Z", {})  # dangling, not ours
    return api


def test_prune_keeps_the_newest_builds_by_creation_time(builds: FakeAPI) -> None:
    plan = plan_prune(Engine(builds), name=NAME, keep=3)
    assert [i.repo_tags for i in plan.kept_builds] == [
        ("demo:latest", "demo:sha-5555555"),
        ("demo:sha-4444444",),
        ("demo:sha-3333333",),
    ]
    assert [i.repo_tags for i in plan.old_builds] == [
        ("demo:1.1.0",),
        ("demo:1.0.0", "demo:sha-1111111"),
    ]
    assert [i.id[7:8] for i in plan.dangling] == ["7"]


def test_prune_only_looks_at_images_labelled_with_the_name(builds: FakeAPI) -> None:
    plan = plan_prune(Engine(builds), name=NAME, keep=0)
    touched = sorted(i.id[7] for i in (*plan.old_builds, *plan.dangling))
    # Every build, the dangling 7, and (keeping no build) the builder-stage cache 6.
    assert touched == ["1", "2", "3", "4", "5", "6", "7"]
    assert "demo:buildcache" in [t for i in plan.old_builds for t in i.repo_tags]
    filters = [c[2]["filters"] for c in builds.calls if c[0] == "images"]
    assert filters == [{"label": ["io.shipit.image=demo"]}]
    kept = plan_prune(Engine(builds), name=NAME, keep=1)
    assert "demo:buildcache" not in [t for i in kept.old_builds for t in i.repo_tags]


def test_prune_apply_removes_only_planned_tags_and_dangling_images(builds: FakeAPI) -> None:
    reporter, _, _ = make_reporter()
    engine = Engine(builds)
    plan = plan_prune(engine, name=NAME, keep=3)
    outcome = apply_prune(engine, reporter, plan)
    removed = [c[1][0] for c in builds.calls if c[0] == "remove_image"]
    assert removed == ["demo:1.1.0", "demo:1.0.0", "demo:sha-1111111", "sha256:" + "7" * 64]
    assert outcome.removed == (
        "tag demo:1.1.0",
        "tag demo:1.0.0",
        "tag demo:sha-1111111",
        "image 777777777777",
    )


def test_prune_apply_skips_a_tag_that_moved_since_the_plan(builds: FakeAPI) -> None:
    reporter, _, _ = make_reporter()
    engine = Engine(builds)
    plan = plan_prune(engine, name=NAME, keep=4)
    builds.images["sha256:" + "5" * 64]["RepoTags"].append("demo:1.0.0")
    builds.images["sha256:" + "1" * 64]["RepoTags"].remove("demo:1.0.0")
    outcome = apply_prune(engine, reporter, plan)
    assert (
        "tag demo:1.0.0",
        "now points at 555555555555, not the planned image",
    ) in outcome.skipped
    assert "demo:1.0.0" not in [c[1][0] for c in builds.calls if c[0] == "remove_image"]


def test_prune_reports_images_the_engine_refuses_to_remove(builds: FakeAPI) -> None:
    def remove_image(ref: str, force: bool = False, noprune: bool = False) -> None:
        raise builds._api_error(409, f"conflict: unable to remove repository reference {ref}")

    builds.remove_image = remove_image  # type: ignore[method-assign]
    reporter, _, err = make_reporter()
    engine = Engine(builds)
    outcome = apply_prune(engine, reporter, plan_prune(engine, name=NAME, keep=4))
    assert outcome.removed == ()
    assert outcome.skipped[0][0] == "tag demo:1.0.0"
    assert "warning: kept tag demo:1.0.0: conflict" in err.getvalue()


def test_prune_containers_and_networks_by_the_managed_label(api: FakeAPI) -> None:
    engine = Engine(api)
    reporter, _, _ = make_reporter()
    start_container(
        engine, reporter, RunOptions(image="demo:latest", network="gone", container_name="stopped")
    )
    start_container(
        engine, reporter, RunOptions(image="demo:latest", network="busy", container_name="up")
    )
    api.containers_db[
        next(c for c in api.containers_db if api.containers_db[c]["Name"] == "/stopped")
    ]["State"] = {"Status": "exited", "Running": False, "ExitCode": 0}
    # Not shipit's: an unlabelled container and network.
    api.create_network("theirs", driver="bridge", labels={})
    api.create_container("demo:latest", name="theirs", host_config={"network_mode": "theirs"})

    plan = plan_prune(engine, name=NAME, keep=3)
    assert [c.name for c in plan.containers] == ["stopped"]
    assert [n.name for n in plan.networks] == ["gone"]
    assert ("container up", "running (pass --all to remove it)") in plan.left
    assert ("network busy", "in use by 1 container(s)") in plan.left

    everything = plan_prune(engine, name=NAME, keep=3, include_running=True)
    assert sorted(c.name for c in everything.containers) == ["stopped", "up"]
    assert sorted(n.name for n in everything.networks) == ["busy", "gone"]
    apply_prune(engine, reporter, everything)
    assert leftovers(api) == (["/theirs"], ["theirs"])


def test_prune_cli_without_yes_prints_the_plan_and_changes_nothing(
    project: Path, fake_api: FakeAPI
) -> None:
    build(fake_api, 1, ["demo:old"], "2024-05-01T10:00:00Z")
    build(fake_api, 2, ["demo:new"], "2024-05-02T10:00:00Z")
    result = runner.invoke(app, ["prune", "--keep", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("image      demo:old (111111111111, 100.0 MB)")
    assert "run again with --yes" in result.stderr
    assert not any(c[0].startswith("remove") for c in fake_api.calls)


def test_prune_cli_yes_json_lists_plan_and_removed(project: Path, fake_api: FakeAPI) -> None:
    build(fake_api, 1, ["demo:old"], "2024-05-01T10:00:00Z")
    build(fake_api, 2, ["demo:new"], "2024-05-02T10:00:00Z")
    result = runner.invoke(app, ["prune", "--keep", "1", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dry_run"] is False and data["name"] == "demo"
    assert [i["tags"] for i in data["plan"]["images"]] == [["demo:old"]]
    assert [i["tags"] for i in data["plan"]["kept"]] == [["demo:new"]]
    assert data["removed"] == ["tag demo:old"]
    assert data["skipped"] == []


# ---------------------------------------------------------------- engine pieces


def test_repository_of_strips_tags_and_digests_but_not_registry_ports() -> None:
    assert repository_of("team/app:1.2") == "team/app"
    assert repository_of("localhost:5000/app") == "localhost:5000/app"
    assert repository_of("localhost:5000/app:1") == "localhost:5000/app"
    assert repository_of("app@sha256:" + "a" * 64) == "app"


def test_engine_orders_same_second_images_by_nanosecond_created() -> None:
    assert Engine._parse_timestamp("2024-05-03T10:00:00.100000001Z") == pytest.approx(1714730400.1)
    assert Engine._parse_timestamp("2024-05-03T10:00:00Z") == 1714730400.0
    assert Engine._parse_timestamp("garbage") is None


def test_engine_follow_logs_reassembles_lines_split_across_chunks(api: FakeAPI) -> None:
    engine = Engine(api)
    reporter, _, _ = make_reporter()
    run = start_container(engine, reporter, RunOptions(image="demo:latest", network="n"))
    api.log_lines = ["first line of output", "second", "third line"]
    assert list(engine.follow_logs(run.container_id)) == api.log_lines
