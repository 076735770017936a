"""The benchmark harness (benchmarks/): its statistics and report code, and a quick real run.

Targets are never asserted here: only that the harness measures, decides and reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import proc, report
from benchmarks.countproxy import operation_name
from benchmarks.machine import MachineInfo, cpu_model, memory_gib, os_release
from benchmarks.runner import CASES, select_cases
from benchmarks.stats import (
    CaseResult,
    Side,
    Target,
    alternate,
    comparison,
    errored,
    exit_code,
    format_value,
    measure_alternating,
    measurement,
    median,
    ratio,
    skipped,
    spread,
)

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- statistics


def test_median_and_ratio() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0, 3.0, 10.0]) == 2.5
    assert ratio([2.0, 2.2, 1.8], [1.0, 1.0, 1.1]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        median([])
    with pytest.raises(ValueError):
        ratio([1.0], [0.0])


def test_spread_is_zero_for_one_run() -> None:
    assert spread([5.0]) == 0.0
    assert spread([1.0, 2.0, 3.0]) == pytest.approx(1.0)


def test_alternate_interleaves_sides() -> None:
    assert alternate(["A", "B"], 3) == ["A", "B", "A", "B", "A", "B"]
    with pytest.raises(ValueError):
        alternate(["A"], 0)


def test_measure_alternating_runs_in_order_with_warmup() -> None:
    order: list[str] = []

    def side(label: str, value: float) -> Callable[[], float]:
        def run() -> float:
            order.append(label)
            return value

        return run

    samples = measure_alternating({"a": side("a", 1.0), "b": side("b", 2.0)}, 2, warmup=True)
    assert order == ["a", "b", "a", "b", "a", "b"]  # warm-up pair first, then A B A B
    assert samples == {"a": [1.0, 1.0], "b": [2.0, 2.0]}  # warm-up runs are thrown away


@pytest.mark.parametrize(
    ("target", "metric", "met"),
    [
        (Target("<=", 1.3), 1.29, True),
        (Target("<=", 1.3), 1.3, True),
        (Target("<=", 1.3), 1.31, False),
        (Target(">=", 2.0), 1.5, False),
        (Target("==", 0, "calls"), 0, True),
        (Target("==", 0, "calls"), 1, False),
    ],
)
def test_target(target: Target, metric: float, met: bool) -> None:
    assert target.met(metric) is met


def test_format_value_units() -> None:
    assert format_value(1.234, "x") == "1.23x"
    assert format_value(0.1234, "s") == "0.123 s"
    assert format_value(12.34, "s") == "12.3 s"
    assert format_value(7.25, "MB") == "7.2 MB"
    assert format_value(0, "calls") == "0 calls"
    assert Target("<=", 25, "MB").describe() == "<= 25.0 MB"


def test_comparison_decides_met_and_missed() -> None:
    fast = comparison(
        "1", "t", Side("a", "a", [1.0, 1.1]), Side("b", "b", [1.0, 1.0]), Target("<=", 1.3)
    )
    assert fast.status == "met"
    assert fast.metric == pytest.approx(1.05)
    slow = comparison("1", "t", Side("a", "a", [2.0]), Side("b", "b", [1.0]), Target("<=", 1.3))
    assert slow.status == "missed" and slow.missed
    info = comparison("1", "t", Side("a", "a", [2.0]), Side("b", "b", [1.0]), None)
    assert info.status == "info" and info.metric == pytest.approx(2.0)


def test_measurement_and_exit_code() -> None:
    size = measurement("8", "size", 7.2, "MB", Target("<=", 25, "MB"))
    assert size.status == "met"
    missed = measurement("9", "health", 6.0, "s", Target("<=", 3.0, "s"))
    assert missed.status == "missed"
    skip = skipped("5", "ecr", "no ECR setup")
    # Missed targets and skips exit 0; only a crash exits non-zero.
    assert exit_code([size, missed, skip]) == 0
    assert exit_code([size, errored("3", "push", "Traceback ...")]) == 1
    assert skip.decide().status == "skipped"


# ---------------------------------------------------------------- report


def _machine() -> MachineInfo:
    return MachineInfo(
        cpu_count=2,
        cpu_model="AMD EPYC",
        memory_gib=23.5,
        kernel="6.1.0",
        os_name="Debian GNU/Linux 12 (bookworm)",
        docker_server="20.10.24 (API 1.41)",
        docker_client="28.2.2",
        python="3.11.7",
        date="2026-01-01 12:00",
        tools={"docker-registry": "2.8.2"},
    )


def test_report_has_machine_method_table_and_missed_profile() -> None:
    met = comparison(
        "1a",
        "Start-up",
        Side("shipit --version", ".venv/bin/shipit --version", [0.10, 0.11, 0.12]),
        Side("import", "python -c 'import typer, rich'", [0.09, 0.10, 0.10]),
        Target("<=", 1.3),
    )
    missed = comparison(
        "3",
        "Fresh push",
        Side("shipit", "shipit push", [9.0]),
        Side("docker", "docker push", [7.0]),
        Target("<=", 1.05),
    )
    missed.profile = "cProfile ... recv_into"
    missed.next_step = "cut the verification round trip"
    crashed = errored("6", "CI rebuild", "Traceback: boom")
    text = report.render(
        _machine(),
        [met, missed, crashed],
        method=["- alternated A B A B"],
        mode="full",
        command=".venv/bin/python -m benchmarks",
        duration_s=600,
    )
    for needle in (
        "# Benchmarks",
        "| CPUs | 2 |",
        "| CPU model | AMD EPYC |",
        "| Memory | 23.5 GiB |",
        "| Kernel | 6.1.0 |",
        "| Docker engine | 20.10.24 (API 1.41) |",
        "2026-01-01 12:00",
        "## Method",
        "- alternated A B A B",
        "| 1a | Start-up | 0.110 s | 0.100 s | 1.10x | <= 1.30x | met |",
        "| 3 | Fresh push | 9.000 s | 7.000 s | 1.29x | <= 1.05x | **missed** |",
        "Missed targets: 3 (Fresh push).",
        "cProfile ... recv_into",
        "**Next step**: cut the verification round trip",
        "Traceback: boom",
        "3 run(s): 0.100, 0.110, 0.120 s; spread 18%",
    ):
        assert needle in text, needle
    # The table has one row per result, each with seven cells.
    rows = [
        line for line in text.splitlines() if line.startswith("| 1a") or line.startswith("| 3 ")
    ]
    assert all(row.count(" | ") == 6 for row in rows)


def test_report_escapes_pipes_in_cells() -> None:
    result = CaseResult("5a", "aws | docker login", status="info")
    assert "aws \\| docker login" in "\n".join(report.summary_table([result]))


# ---------------------------------------------------------------- machine, profiles, proxy


def test_machine_parsers() -> None:
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n") == "AMD EPYC 7B13"
    assert cpu_model("") == "unknown"
    assert memory_gib("MemTotal:       24641536 kB\n") == pytest.approx(23.5, abs=0.1)
    assert os_release('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n') == (
        "Debian GNU/Linux 12 (bookworm)"
    )


def test_importtime_parsing() -> None:
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       300 |        300 |   typer.core",
            "import time:      1000 |       5000 | typer",
            "import time:       200 |       6000 | shipit.cli",
        ]
    )
    parsed = proc.parse_importtime(stderr)
    assert parsed[0] == (300, 300, 1, "typer.core")
    assert parsed[2] == (200, 6000, 0, "shipit.cli")
    text = proc.format_importtime(stderr, top=2)
    assert "11.0 ms in top-level imports" in text
    assert text.splitlines()[2].split()[-1] == "shipit.cli"


def test_cprofile_formatting_and_lookup(tmp_path: Path) -> None:
    import cProfile

    def engine_like_wait() -> int:
        return sum(range(20000))

    out = tmp_path / "p.prof"
    profiler = cProfile.Profile()
    profiler.runcall(engine_like_wait)
    profiler.dump_stats(str(out))
    text = proc.format_cprofile(out, top=3, focus=None)
    assert "cProfile of the shipit process" in text
    assert "engine_like_wait" in text
    seconds, calls = proc.cprofile_lookup(out, r"\(engine_like_wait\)")
    assert calls == 1 and seconds >= 0
    assert proc.cprofile_lookup(out, r"no_such_function") == (0.0, 0)


def test_cprofile_breakdown_takes_nested_calls_out_of_the_outer_one(tmp_path: Path) -> None:
    import cProfile
    import time

    def make_clients_like() -> None:
        time.sleep(0.05)

    def fetch_like() -> None:
        make_clients_like()
        time.sleep(0.02)

    out = tmp_path / "p.prof"
    profiler = cProfile.Profile()
    profiler.runcall(fetch_like)
    profiler.dump_stats(str(out))
    calls = {"fetch": r"\(fetch_like\)", "clients": r"\(make_clients_like\)", "none": "nope"}
    total, parts, rest = proc.cprofile_breakdown(out, calls, nested={"fetch": "clients"})
    found = {label: seconds for label, seconds, _ in parts}
    assert set(found) == {"fetch", "clients"}  # what never ran is left out
    assert found["clients"] >= 0.05
    assert found["fetch"] < found["clients"]  # 0.02 s of its own, not 0.07
    assert rest >= 0 and abs(total - rest - sum(found.values())) < 1e-9


def test_operation_names_for_json_and_query_protocols() -> None:
    ecr = {"X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"}
    assert operation_name(ecr, b"{}") == "ecr:GetAuthorizationToken"
    sts_headers = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/sts/aws4_request"
    }
    assert operation_name(sts_headers, b"Action=GetCallerIdentity&Version=2011-06-15") == (
        "sts:GetCallerIdentity"
    )
    assert operation_name({}, b"") == "http:other"


def test_counting_proxy_forwards_and_counts() -> None:
    import threading
    import urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from benchmarks.countproxy import counting_proxy

    class Upstream(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            payload = json.dumps({"echo": body.decode()}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with counting_proxy(server.server_address[1]) as proxy:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            request = urllib.request.Request(
                proxy.endpoint_url + "/",
                data=b"{}",
                headers={
                    "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories"
                },
            )
            for _ in range(2):
                with opener.open(request, timeout=5) as response:
                    assert json.loads(response.read()) == {"echo": "{}"}
            assert proxy.take() == Counter({"ecr:DescribeRepositories": 2})
            assert proxy.take() == Counter()
    finally:
        server.shutdown()
        server.server_close()


def test_seed_token_cache_moves_expiry(tmp_path: Path) -> None:
    from benchmarks.cases_ecr import seed_token_cache

    path = tmp_path / "ecr-tokens.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "entries": {
                    "k": {
                        "registry": "r",
                        "username": "AWS",
                        "password": "p",
                        "expires_at": "2015-01-01T00:00:00+00:00",
                    }
                },
            }
        )
    )
    assert seed_token_cache(path) == 1
    entry = json.loads(path.read_text())["entries"]["k"]
    assert entry["expires_at"] > "2026"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_environment_drops_ci_and_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("SHIPIT_REGISTRIES", "ecr")
    monkeypatch.setenv("AWS_PROFILE", "prod")
    env = proc.base_env(tmp_path, {"AWS_REGION": "us-east-1"})
    assert "CI" not in env and "GITHUB_ACTIONS" not in env
    assert "SHIPIT_REGISTRIES" not in env and "AWS_PROFILE" not in env
    assert env["AWS_REGION"] == "us-east-1"
    assert env["DOCKER_CONFIG"] == str(tmp_path / "docker-config")


def test_timed_measures_and_raises_on_failure(tmp_path: Path) -> None:
    env = proc.base_env(tmp_path)
    run = proc.timed([sys.executable, "-c", "print('hi')"], env=env, cwd=tmp_path)
    assert run.returncode == 0 and "hi" in run.output and run.seconds > 0
    with pytest.raises(proc.CommandFailed, match="exited 3"):
        proc.timed([sys.executable, "-c", "raise SystemExit(3)"], env=env, cwd=tmp_path)
    on_tty = proc.timed_pty(
        [sys.executable, "-c", "import sys; print(sys.stderr.isatty())"], env=env, cwd=tmp_path
    )
    assert "True" in on_tty.output


def test_only_this_runs_repositories_are_cleaned_up() -> None:
    from benchmarks.names import RUN_ID, SAMPLE, is_own_repository

    assert f"bench-hello-{RUN_ID}" == SAMPLE
    assert is_own_repository(SAMPLE)
    assert is_own_repository(f"127.0.0.1:5000/bench-ci-{RUN_ID}")
    assert not is_own_repository("bench-hello")  # another run's, or an older harness's
    assert not is_own_repository("bench-hello-000000" if RUN_ID != "000000" else "bench-hello-1")
    assert not is_own_repository("shipit.local/python")
    assert not is_own_repository("hello-flask")


def test_select_cases() -> None:
    assert [c.name for c in select_cases("startup,3")] == ["startup", "push"]
    assert len(select_cases(None)) == len(CASES) == 15
    assert [c.number for c in select_cases("platforms")] == ["15"]
    assert [c.number for c in select_cases("cold,11")] == ["11", "14"]
    with pytest.raises(SystemExit):
        select_cases("nope")


# ---------------------------------------------------------------- a real quick run


@pytest.mark.integration
def test_quick_mode_runs_cheap_cases_and_writes_a_report(
    tmp_path: Path, docker_api: object
) -> None:
    """`python -m benchmarks --quick` for four cheap cases (start-up, the large context with
    the legacy builder and with BuildKit, the two-platform release): exits 0 (missed targets included) and writes the
    report to --output, leaving docs/benchmarks.md alone."""
    output = tmp_path / "bench.md"
    docs = REPO / "docs" / "benchmarks.md"
    before = docs.read_bytes() if docs.exists() else None
    env = {k: v for k, v in os.environ.items() if k != "SHIPIT_REQUIRE_DOCKER"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            "startup,context,noop,platforms",
            "--output",
            str(output),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = output.read_text()
    assert "quick mode" in text
    assert "| 1a |" in text and "| 1b |" in text and "| 2 |" in text and "| 12 |" in text
    assert "QEMU emulation: " in text  # off, or why it could not be switched off
    # The two-platform release runs with qemu-aarch64 on, or says why it cannot run.
    assert "| 15 |" in text and ("| 15b |" in text or "cannot run:" in text)
    assert "Emulation's share" in text or "cannot run:" in text
    assert "## Machine" in text and "## Method" in text
    assert "**error**" not in text
    after = docs.read_bytes() if docs.exists() else None
    assert after == before


def test_cached_steps_from_verbose_build_output() -> None:
    from benchmarks.cases_ci import cached_steps

    output = "\n".join(
        [
            "Step 1/3 : FROM base",
            "  ---> 1234",
            "Step 2/3 : RUN python3 -m venv /opt/venv",
            "  ---> Using cache",
            "Step 3/3 : COPY app.py ./",
            "  ---> 5678",
        ]
    )
    assert cached_steps(output) == ["RUN python3 -m venv /opt/venv"]


def test_build_image_ids_from_legacy_builder_output() -> None:
    output = "Step 1/2 : FROM scratch\n ---> \nStep 2/2 : COPY . /app\n ---> Using cache\n ---> 3e9284ca266a\nSuccessfully built 3e9284ca266a\n"
    assert proc.build_image_ids(output) == ["3e9284ca266a", "3e9284ca266a"]


def test_loadavg_parsing() -> None:
    from benchmarks.machine import loadavg

    assert loadavg("0.34 0.33 0.35 1/234 5678\n") == "0.34 / 0.33 / 0.35"
    assert loadavg("") == "not available"


# ---------------------------------------------------------------- build cases and shared helpers


def test_profile_patterns_match_the_flat_and_the_package_layout() -> None:
    import re

    pattern = re.compile(proc.where("engine", "connect"))
    assert pattern.search("shipit/engine.py:185(connect)")
    assert pattern.search("shipit/adapters/engine/client.py:40(connect)")
    assert not pattern.search("shipit/engine.py:185(connect_later)")
    assert not pattern.search("shipit/services/push.py:12(connect)")
    assert re.search(
        proc.where("dockerconfig|docker_config", "store"), "shipit/dockerconfig.py:9(store)"
    )


def test_pushed_refs_follow_the_tags_of_a_push() -> None:
    from benchmarks.cases_push import push_args, pushed_refs
    from benchmarks.names import SAMPLE

    class Reg:
        def __init__(self, address: str) -> None:
            self.address = address

    regs = [Reg("127.0.0.1:1"), Reg("127.0.0.1:2")]
    args = push_args([r.address for r in regs], "--no-latest", "--tag", "t1", "--tag", "t2")
    assert args[:5] == ["push", "--registry", "127.0.0.1:1", "--registry", "127.0.0.1:2"]
    assert pushed_refs(regs, args) == [
        f"127.0.0.1:1/{SAMPLE}:t1",
        f"127.0.0.1:1/{SAMPLE}:t2",
        f"127.0.0.1:2/{SAMPLE}:t1",
        f"127.0.0.1:2/{SAMPLE}:t2",
    ]
    assert pushed_refs(regs[:1], ["sh", "-c", "docker push x"]) == [f"127.0.0.1:1/{SAMPLE}:latest"]


def test_builder_is_read_off_the_build_output() -> None:
    from benchmarks.cases_build import builder_of

    assert builder_of("Step 1/3 : FROM scratch\n ---> abc\n") == "the legacy builder"
    assert builder_of("[+] Building 0.1s\n => [1/2] FROM scratch\n") == "BuildKit"


def test_floor_imports_the_modules_and_survives_a_missing_one(tmp_path: Path) -> None:
    from benchmarks.cases_build import floor_command

    command = floor_command(["json", "no_such_module_here", "shlex"])
    command[-1] += "import sys; print(sorted(m for m in ('json', 'shlex') if m in sys.modules))\n"
    run = proc.timed(command, env=proc.base_env(tmp_path), cwd=tmp_path)
    assert "['json', 'shlex']" in run.output


@pytest.mark.parametrize("state", ["enabled", "disabled", None])
def test_emulation_off_restores_binfmt_even_on_error(tmp_path: Path, state: str | None) -> None:
    from benchmarks.cases_build import emulation_off

    status = tmp_path / "status"
    if state is not None:
        status.write_text(state + "\n")
        (tmp_path / "qemu-aarch64").write_text("enabled\n")
        (tmp_path / "register").write_text("")
    with pytest.raises(RuntimeError), emulation_off(tmp_path) as said:
        if state == "enabled":
            assert status.read_text() == "0"  # the kernel file takes 0/1, reads enabled/disabled
            assert said.startswith("off:") and "qemu-aarch64" in said
        elif state is None:
            assert "not mounted" in said
        else:
            assert "already disabled" in said and status.read_text() == "disabled\n"
        raise RuntimeError("a build failed")
    if state == "enabled":
        assert status.read_text() == "1"


def test_one_line_change_rewrites_only_the_last_line(tmp_path: Path) -> None:
    from benchmarks.cases_build import OneLineChange

    app = tmp_path / "app.py"
    app.write_text("print('hi')\n")
    change = OneLineChange(app)
    change("shipit")
    change("floor")  # the floor builds nothing: no change
    change("docker")
    assert app.read_text() == "print('hi')\n# benchmark change 2\n"


def test_build_case_names_are_this_runs_own() -> None:
    from benchmarks.names import RUN_ID, build_names, is_own_repository

    for case in ("inner", "noop", "big", "cold"):
        shipit_name, docker_name = build_names(case)
        assert is_own_repository(shipit_name) and is_own_repository(docker_name)
        assert RUN_ID in shipit_name


def test_ecr_case_composes_its_three_results_from_a_stand_in_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ECR case's wiring (call counting, warm cache, floors, missed-target explanation)
    without moto or the TLS registry: commands answer with fixed times."""
    import contextlib
    import cProfile

    from benchmarks import cases_ecr, support
    from benchmarks.bench import Bench

    class Moto:
        port, account_id, endpoint_url = 1, "123456789012", "http://127.0.0.1:1"

        def env(self) -> dict[str, str]:
            return {"AWS_REGION": "us-east-1"}

    class Registry:
        registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"

    token = Counter({"ecr:GetAuthorizationToken": 1})
    # first, second (moto's 2015 expiry), seeded second, --registry-id first and second, warm, aws
    takes = iter([token, token, Counter(), token, Counter(), Counter(), token])

    class Proxy:
        endpoint_url = "http://127.0.0.1:2"

        def take(self) -> Counter[str]:
            return next(takes)

    def fake_timed(command: list[str], *, env: dict[str, str], cwd: Path, **_: object) -> proc.Run:
        cache = Path(env["SHIPIT_CACHE_DIR"]) / "ecr-tokens.json"
        warm = cache.exists()
        if command[0].endswith("shipit"):
            cache.parent.mkdir(parents=True, exist_ok=True)
            entry = {"expires_at": "2015-01-01T00:00:00+00:00"}
            cache.write_text(json.dumps({"version": 1, "entries": {"k": entry}}))
        seconds = 0.4 if command[0] == "bash" else 0.2 if "-c" in command else 0.3
        return proc.Run(0.1 if warm and command[0].endswith("shipit") else seconds, 0, "", 0)

    def fake_profile(self: Bench, *args: object, **kwargs: object) -> tuple[Path, proc.Run]:
        out = tmp_path / "login.prof"
        cProfile.runctx("sum(range(10))", {}, {}, str(out))
        return out, proc.Run(0.5, 0, "", 0)

    monkeypatch.setattr(support, "ecr_missing", lambda wait, log: None)
    monkeypatch.setattr(
        support,
        "ecr_stack",
        contextlib.contextmanager(lambda root: iter([support.EcrStack(Moto(), Registry())])),
    )
    monkeypatch.setattr(cases_ecr, "ensure_awscli", lambda b: (Path("/bin/aws"), "stand-in"))
    monkeypatch.setattr(cases_ecr, "timed", fake_timed)
    monkeypatch.setattr(
        cases_ecr, "counting_proxy", contextlib.contextmanager(lambda port: iter([Proxy()]))
    )
    monkeypatch.setattr(Bench, "profile", fake_profile)
    b = Bench(quick=True, tmp=tmp_path, runs=2)
    a, calls, c = cases_ecr.ecr_login(b)
    assert (a.key, calls.key, c.key) == ("5a", "5b", "5c")
    assert calls.metric == 0 and calls.status == "met"  # the second, seeded login: no call
    assert any("moved the expiry of the 1 cached token" in note for note in calls.notes)
    assert a.metric == pytest.approx(0.75) and a.missed and "0.50x awscli" in (a.next_step or "")
    assert c.metric == pytest.approx(0.25) and c.status == "met"
    assert a.profile and "cProfile" in a.profile


def test_build_steps_of_buildkit_plain_output() -> None:
    from benchmarks.cases_ci import build_steps, rebuilt_steps, uses_buildkit

    output = "\n".join(
        [
            "#1 [internal] load build definition from Dockerfile",
            "#4 [builder 1/3] FROM shipit.local/python:3.11-bookworm",
            "#5 [builder 2/3] RUN python3 -m venv /opt/venv",
            "#5 CACHED",
            "#6 [stage-1 3/5] COPY gunicorn.conf.py app.py ./",
            "#6 DONE 0.1s",
            "#5 [builder 2/3] RUN python3 -m venv /opt/venv",
            "#1 [internal] load remote build context",  # the builder stage's own build
            "#6 [builder 2/3] RUN python3 -m venv /opt/venv",
            "#6 CACHED",
            "#5 [builder 3/3] COPY requirements.txt /tmp/requirements.txt",
            "#5 DONE 0.0s",
        ]
    )
    assert uses_buildkit(output) and not uses_buildkit("Step 1/2 : FROM scratch")
    assert build_steps(output) == [
        ("FROM shipit.local/python:3.11-bookworm", False),
        ("RUN python3 -m venv /opt/venv", True),
        ("COPY gunicorn.conf.py app.py ./", False),
        ("RUN python3 -m venv /opt/venv", True),
        ("COPY requirements.txt /tmp/requirements.txt", False),
    ]
    assert rebuilt_steps(output) == [
        "COPY gunicorn.conf.py app.py ./",
        "COPY requirements.txt /tmp/requirements.txt",
    ]


def test_terminal_notes_of_the_progress_case() -> None:
    from benchmarks.cases_push import _terminal_notes

    runs = {
        "live": [proc.Run(1.0, 0.4, "\x1b[2K" * 10 + "x" * 1000, 0)] * 3,
        "quiet": [proc.Run(1.0, 0.3, "y" * 100, 0)] * 3,
    }
    notes = _terminal_notes(runs)
    assert "(10 escape sequences)" in notes[1] and "--quiet wrote 0.1 KiB" in notes[1]
    assert "live median 0.40 s, --quiet 0.30 s" in notes[2] and "+0.10 CPU-s" in notes[2]


def test_heaviest_imports_of_a_build() -> None:
    from benchmarks.cases_build import heaviest

    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:      2000 |       2000 |   grpc._cython",
            "import time:      1000 |      61000 | grpc",
            "import time:       500 |       9000 | shipit.cli",
            "import time:       100 |        100 | json",
        ]
    )
    assert heaviest(stderr, top=2) == "grpc 61 ms, shipit.cli 9 ms"


# ---------------------------------------------------------------- multi-platform release


def _binfmt(root: Path, status: str, entry: str | None) -> Path:
    root.mkdir()
    (root / "status").write_text(status + "\n")
    (root / "register").write_text("")
    (root / "qemu-arm").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/arm\n")
    if entry is not None:
        (root / "qemu-aarch64").write_text(entry + "\ninterpreter /usr/libexec/qemu-binfmt/x\n")
    return root


@pytest.mark.parametrize(
    ("status", "entry", "switched"),
    [
        ("enabled", "enabled", []),
        ("disabled", "enabled", ["status"]),
        ("enabled", "disabled", ["qemu-aarch64"]),
        ("disabled", "disabled", ["status", "qemu-aarch64"]),
    ],
)
def test_emulation_on_enables_qemu_aarch64_and_restores_even_on_error(
    tmp_path: Path, status: str, entry: str, switched: list[str]
) -> None:
    from benchmarks.cases_platforms import emulation_on

    root = _binfmt(tmp_path / "binfmt", status, entry)
    before = {name: (root / name).read_text() for name in ("status", "qemu-aarch64")}
    with pytest.raises(RuntimeError, match="a build failed"), emulation_on(root) as said:
        for name in switched:  # the kernel file takes 1/0 and reads enabled/disabled
            assert (root / name).read_text() == "1"
        assert said.startswith("on: qemu-aarch64")
        assert ("already on" in said) is (not switched)
        assert "other emulators enabled: qemu-arm" in said
        raise RuntimeError("a build failed")
    for name, text in before.items():
        assert (root / name).read_text() == ("0" if name in switched else text)


def test_emulation_on_says_why_the_case_cannot_run(tmp_path: Path) -> None:
    from benchmarks.cases_platforms import EmulationMissing, emulation_on

    with pytest.raises(EmulationMissing, match="not mounted"), emulation_on(tmp_path / "none"):
        pass
    root = _binfmt(tmp_path / "binfmt", "enabled", None)
    with pytest.raises(EmulationMissing, match="no qemu-aarch64 handler"), emulation_on(root):
        pass
    assert (root / "status").read_text() == "enabled\n"


def test_platform_medians_bound_and_emulation_share() -> None:
    from benchmarks.cases_platforms import Medians

    m = Medians(
        both=3.0, seq=4.0, release_amd64=1.5, release_arm64=2.5, build_amd64=0.9, build_arm64=1.8
    )
    assert m.best == 2.5  # the amd64 release wholly hidden under the arm64 one
    assert m.emulated == pytest.approx(0.9)


def test_platform_case_names_are_this_runs_own() -> None:
    from benchmarks.cases_platforms import BASE_NAME, NAME, PUSH_NAME, _own, _pushed, _released
    from benchmarks.names import RUN_ID

    assert RUN_ID in NAME and RUN_ID in BASE_NAME and RUN_ID in PUSH_NAME
    assert _own(NAME) and _own(f"127.0.0.1:5000/{NAME}") and _own(PUSH_NAME)
    assert not _own(BASE_NAME) and not _own("shipit.local/busybox")
    # Between runs the release sides drop their images, the push sides only what a push tagged.
    assert _released(NAME) and not _released(PUSH_NAME)
    assert _pushed(f"127.0.0.1:5000/{PUSH_NAME}") and not _pushed(PUSH_NAME)
