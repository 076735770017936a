"""Self-tests of tests/support: real registries, moto's server, the fault proxy, and how the
Docker engine reacts to registry faults (pinned here because shipit's retry design builds on it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import missing_binaries
from tests.support.faultproxy import (
    FaultPlan,
    FaultProxy,
    drop,
    fault_proxy,
    garbage,
    reset,
    stall,
    status,
)
from tests.support.moto_server import moto_server_missing, running_moto_server
from tests.support.ports import free_port, held_closed_port, port_accepts, port_is_free
from tests.support.registry import (
    ECR_PASSWORD,
    ECR_USERNAME,
    Registry,
    ecr_environment_ready,
    ecr_setup,
    running_ecr_registry,
    running_registry,
    skopeo_digest,
)

BUSYBOX = os.environ.get("SHIPIT_BUSYBOX_IMAGE", "shipit.local/busybox:latest")
UPLOAD_START = r"^/v2/.+/blobs/uploads/$"  # POST that opens a blob upload
UPLOAD_ANY = r"^/v2/.+/blobs/uploads/"  # POST, PATCH (data) and PUT (commit) of an upload

needs_registry = pytest.mark.skipif(
    missing_binaries("docker-registry") is not None,
    reason=missing_binaries("docker-registry") or "",
)
needs_skopeo = pytest.mark.skipif(
    missing_binaries("skopeo") is not None, reason=missing_binaries("skopeo") or ""
)
needs_moto = pytest.mark.skipif(
    moto_server_missing() is not None, reason=moto_server_missing() or ""
)


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path / "auth-registry", username="alice", password="s3cret") as reg:
        yield reg


# -- ports ---------------------------------------------------------------------------------


def test_free_port_is_bindable_and_then_taken() -> None:
    port = free_port()
    assert port_is_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen(1)
        assert not port_is_free(port)
        assert port_accepts(port)


# -- registry ------------------------------------------------------------------------------


@needs_registry
def test_registry_without_auth_answers_v2(registry: Registry) -> None:
    assert registry.address == f"127.0.0.1:{registry.port}"
    assert registry.url == f"http://127.0.0.1:{registry.port}"
    assert registry.creds is None
    assert registry.request("GET", "/v2/").status_code == 200
    assert registry.tags("nothing/here") == []
    assert registry.manifest_digest("nothing/here", "1") is None
    config = json.loads(registry.config_path.read_text())
    assert config["storage"]["delete"]["enabled"] is True
    assert config["log"]["level"] == "warn"


@needs_registry
def test_registry_with_auth_challenges_and_accepts(auth_registry: Registry) -> None:
    assert auth_registry.request("GET", "/v2/", auth=False).status_code == 401
    assert auth_registry.request("GET", "/v2/").status_code == 200
    with _session() as session:
        bad = session.get(auth_registry.url + "/v2/", auth=("alice", "nope"), timeout=5)
    assert bad.status_code == 401
    assert "Basic" in bad.headers.get("WWW-Authenticate", "")
    assert auth_registry.creds == "alice:s3cret"
    assert auth_registry.log_path.exists()


@needs_registry
def test_registry_stops_and_frees_its_port(tmp_path: Path) -> None:
    with running_registry(tmp_path / "r") as reg:
        process = reg.process
        assert process is not None
        assert port_accepts(reg.port)
    assert process.poll() is not None
    assert not port_accepts(reg.port)
    reg.stop()  # idempotent


@needs_registry
def test_registry_stops_when_the_body_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), running_registry(tmp_path / "r") as reg:
        process = reg.process
        raise RuntimeError("boom")
    assert process is not None and process.poll() is not None


@needs_registry
def test_blob_and_manifest_round_trip_through_the_api(auth_registry: Registry) -> None:
    """A hand-made OCI image: what manifest_digest() and tags() report after an API push."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    config_digest = _upload_blob(auth_registry.url, auth_registry.auth, "team/app", config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    put = auth_registry.request(
        "PUT",
        "/v2/team/app/manifests/v1",
        data=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert put.status_code == 201, put.text
    expected = "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert auth_registry.manifest_digest("team/app", "v1") == expected
    assert auth_registry.tags("team/app") == ["v1"]
    media_type, body = auth_registry.manifest("team/app", "v1")
    assert media_type == "application/vnd.oci.image.manifest.v1+json"
    assert body["config"]["digest"] == config_digest


@needs_registry
@needs_skopeo
def test_skopeo_sees_the_same_digest(auth_registry: Registry) -> None:
    digest = _push_tiny_image(auth_registry.url, auth_registry.auth, "team/app", "v1")
    assert auth_registry.skopeo_digest("team/app", "v1") == digest
    assert skopeo_digest(f"{auth_registry.address}/team/app:v1", "alice:s3cret") == digest


@needs_registry
def test_registry_with_tls(tmp_path: Path) -> None:
    if missing_binaries("openssl"):
        pytest.skip(missing_binaries("openssl") or "")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    with running_registry(
        tmp_path / "r", tls_cert=cert, tls_key=key, username="u", password="p"
    ) as reg:
        assert reg.url.startswith("https://127.0.0.1:")
        assert reg.request("GET", "/v2/").status_code == 200
        with _session() as session:
            verified = session.get(reg.url + "/v2/", verify=str(cert), auth=("u", "p"), timeout=5)
        assert verified.status_code == 200


# -- moto's server -------------------------------------------------------------------------


@needs_moto
def test_moto_server_sts_and_ecr(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    with running_moto_server() as moto:
        assert moto.endpoint_url == f"http://127.0.0.1:{moto.port}"
        sts = boto3.client(
            "sts",
            endpoint_url=moto.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        assert sts.get_caller_identity()["Account"] == "123456789012"

        # env() alone is enough for boto3 (AWS_ENDPOINT_URL), as shipit will run in CI.
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            monkeypatch.delenv(key, raising=False)
        for key, value in moto.env(region="eu-west-1").items():
            monkeypatch.setenv(key, value)
        ecr = boto3.client("ecr")
        assert ecr.meta.region_name == "eu-west-1"
        ecr.create_repository(repositoryName="team/app")
        token = ecr.get_authorization_token()["authorizationData"][0]
        assert token["proxyEndpoint"] == "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        assert base64.b64decode(token["authorizationToken"]).decode() == (
            f"{ECR_USERNAME}:{ECR_PASSWORD}"
        )
        moto.reset()
        assert ecr.describe_repositories()["repositories"] == []
        process = moto.process
    assert process is not None and process.poll() is not None
    assert not port_accepts(moto.port)


# -- fault proxy ---------------------------------------------------------------------------


@needs_registry
def test_proxy_503_twice_then_passes(auth_registry: Registry) -> None:
    plan = FaultPlan().add(status(503), path=r"^/v2/$", times=2)
    with fault_proxy(auth_registry.address, faults=plan) as proxy, _session() as session:
        answers = [
            session.get(proxy.url + "/v2/", auth=auth_registry.auth, timeout=5) for _ in range(4)
        ]
    assert [r.status_code for r in answers] == [503, 503, 200, 200]
    assert answers[0].headers["Connection"] == "close"
    assert answers[0].json()["errors"][0]["code"] == "UNAVAILABLE"
    assert proxy.requests == 4
    assert proxy.faults_injected == 2
    assert proxy.log == [
        ("GET", "/v2/", "status 503"),
        ("GET", "/v2/", "status 503"),
        ("GET", "/v2/", "pass"),
        ("GET", "/v2/", "pass"),
    ]
    # The two passing requests share one keep-alive connection.
    assert proxy.connections == 3


@needs_registry
def test_proxy_429_carries_retry_after(registry: Registry) -> None:
    plan = FaultPlan().add(status(429, retry_after=2), method="POST", path=UPLOAD_START)
    with fault_proxy(registry.address, faults=plan) as proxy, _session() as session:
        ping = session.get(proxy.url + "/v2/", timeout=5)
        first = session.post(proxy.url + "/v2/team/app/blobs/uploads/", timeout=5)
        second = session.post(proxy.url + "/v2/team/app/blobs/uploads/", timeout=5)
    assert ping.status_code == 200
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "2"
    assert first.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert second.status_code == 202
    assert proxy.actions() == ["pass", "status 429 retry-after=2", "pass"]


@needs_registry
def test_proxy_streams_a_chunked_blob_upload_byte_for_byte(auth_registry: Registry) -> None:
    """POST, chunked PATCH, PUT and GET of a 3 MB blob through the proxy (Location rewritten)."""
    blob = os.urandom(3 * 1024 * 1024 + 7)
    plan = FaultPlan().add(status(503), method="PATCH", path=UPLOAD_ANY)
    with fault_proxy(auth_registry.address, faults=plan) as proxy:
        with pytest.raises(requests.HTTPError, match="503"):
            _upload_blob(proxy.url, auth_registry.auth, "team/blob", blob)
        digest = _upload_blob(proxy.url, auth_registry.auth, "team/blob", blob)
        with _session() as session:
            fetched = session.get(
                f"{proxy.url}/v2/team/blob/blobs/{digest}", auth=auth_registry.auth, timeout=30
            )
            head = session.head(
                f"{proxy.url}/v2/team/blob/blobs/{digest}", auth=auth_registry.auth, timeout=5
            )
    assert fetched.status_code == 200
    assert fetched.content == blob
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(blob))
    assert ("PATCH", "status 503") in [(m, a) for m, _, a in proxy.log]
    assert proxy.faults_injected == 1


@needs_registry
def test_proxy_answers_expect_continue_and_rejects_tls(auth_registry: Registry) -> None:
    """Raw HTTP like Go clients may send: Expect: 100-continue, and the engine's TLS probe."""
    with fault_proxy(auth_registry.address) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(32))
            assert sock.recv(100).startswith(b"HTTP/1.1 400")
        creds = base64.b64encode(b"alice:s3cret").decode()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(
                b"POST /v2/team/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Basic {creds}\r\n".encode()
                + b"Content-Length: 0\r\nExpect: 100-continue\r\n\r\n"
            )
            answer = b""
            while b"\r\n\r\n" not in answer.partition(b"HTTP/1.1 100 Continue\r\n\r\n")[2]:
                chunk = sock.recv(4096)
                assert chunk, answer
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted")
    assert proxy.bad_requests == 1
    assert proxy.log == [("POST", "/v2/team/app/blobs/uploads/", "pass")]


def test_proxy_rewrites_absolute_upstream_locations() -> None:
    proxy = FaultProxy("127.0.0.1:5999")
    try:
        assert proxy._rewrite_location("http://127.0.0.1:5999/v2/x/blobs/uploads/1?a=b") == (
            f"http://127.0.0.1:{proxy.port}/v2/x/blobs/uploads/1?a=b"
        )
        assert proxy._rewrite_location("http://localhost:5999/v2/") == f"{proxy.url}/v2/"
        assert proxy._rewrite_location("/v2/x/blobs/uploads/1") == "/v2/x/blobs/uploads/1"
        assert proxy._rewrite_location("http://other:5999/v2/") == "http://other:5999/v2/"
    finally:
        proxy.stop()


@needs_registry
def test_proxy_reset_gives_connection_error(registry: Registry) -> None:
    with fault_proxy(registry.address, faults=FaultPlan().add(reset())) as proxy:
        with _session() as session, pytest.raises(requests.ConnectionError) as excinfo:
            session.get(proxy.url + "/v2/", timeout=5)
        assert "reset" in str(excinfo.value).lower()
        with _session() as session:
            assert session.get(proxy.url + "/v2/", timeout=5).status_code == 200
    assert proxy.actions() == ["reset", "pass"]


@needs_registry
def test_proxy_stall_times_out_on_the_client(registry: Registry) -> None:
    with fault_proxy(registry.address, faults=FaultPlan().add(stall())) as proxy:
        started = time.monotonic()
        with _session() as session, pytest.raises(requests.ReadTimeout):
            session.get(proxy.url + "/v2/", timeout=(2, 0.5))
        assert time.monotonic() - started < 3
        with _session() as session:
            assert session.get(proxy.url + "/v2/", timeout=5).status_code == 200
        stop_started = time.monotonic()
    assert time.monotonic() - stop_started < 1.5
    assert proxy.actions() == ["stall", "pass"]


@needs_registry
def test_proxy_garbage_and_drop(registry: Registry) -> None:
    plan = FaultPlan().add(garbage("json")).add(garbage("bytes")).add(drop())
    with fault_proxy(registry.address, faults=plan) as proxy, _session() as session:
        bad_json = session.get(proxy.url + "/v2/", timeout=5)
        assert bad_json.status_code == 200
        with pytest.raises(requests.JSONDecodeError):
            bad_json.json()
        with pytest.raises(requests.ConnectionError):
            session.get(proxy.url + "/v2/", timeout=5)
        with pytest.raises(requests.ConnectionError):
            session.get(proxy.url + "/v2/", timeout=5)
        assert session.get(proxy.url + "/v2/", timeout=5).status_code == 200
    assert proxy.actions() == ["garbage json", "garbage bytes", "drop", "pass"]


@needs_registry
def test_proxy_upstream_down_and_unreachable(tmp_path: Path) -> None:
    with running_registry(tmp_path / "r") as reg, fault_proxy(reg.address) as proxy:
        proxy.upstream_down = True
        with _session() as session, pytest.raises(requests.ConnectionError):
            session.get(proxy.url + "/v2/", timeout=5)
        proxy.upstream_down = False
        with _session() as session:
            assert session.get(proxy.url + "/v2/", timeout=5).status_code == 200
        reg.stop()
        # Hold the freed port (bound, not listening) so that no other process can start
        # listening on it: connecting to it is then refused for certain. If another process
        # took it first, point the proxy at a port held the same way.
        with held_closed_port(reg.port) as held, held_closed_port() as spare:
            if held is None:
                assert spare is not None
                proxy.retarget(f"127.0.0.1:{spare}")
            with _session() as session:
                gone = session.get(proxy.url + "/v2/", timeout=5)
        assert gone.status_code == 502
        assert proxy.actions() == ["upstream-down", "pass", "upstream-error"]


@needs_registry
def test_proxy_stops_cleanly_with_open_connections(registry: Registry) -> None:
    proxy = FaultProxy(registry.address, FaultPlan().add(stall(), path="/stall")).start()
    idle = socket.create_connection(("127.0.0.1", proxy.port))
    stalled = socket.create_connection(("127.0.0.1", proxy.port))
    try:
        idle.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(12).startswith(b"HTTP/1.1 200")
        stalled.sendall(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 5
        while proxy.faults_injected < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.alive_threads() >= 3
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 1.5
        assert proxy.alive_threads() == 0
        stalled.settimeout(2)
        assert stalled.recv(100) == b""  # closed, no answer
        assert not port_accepts(proxy.port)
    finally:
        proxy.stop()
        idle.close()
        stalled.close()


# -- the Docker engine against registries and faults ----------------------------------------


def _docker() -> Any:
    """docker-py client when an engine and the busybox test image are there, else skip."""
    try:
        import docker
        import docker.errors

        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine: {exc}")
    try:
        client.images.get(BUSYBOX)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{BUSYBOX} missing (run .ci/setup)")
    return client


@pytest.fixture
def docker_env(tmp_path: Path) -> dict[str, str]:
    """Environment for the docker CLI with its own config dir (no user credentials touched)."""
    config = tmp_path / "docker-config"
    config.mkdir()
    return {**os.environ, "DOCKER_CONFIG": str(config)}


def _docker_cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, text=True, env=env, timeout=300
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def _push_through(
    registry: Registry, plan: FaultPlan, env: dict[str, str], repo: str = "t/busybox"
) -> tuple[int, str, float, FaultProxy]:
    """docker push the busybox image to the registry through a fault proxy; untag afterwards."""
    with fault_proxy(registry.address, faults=plan) as proxy:
        ref = f"{proxy.address}/{repo}:1"
        subprocess.run(["docker", "tag", BUSYBOX, ref], check=True, capture_output=True)
        try:
            code, output, seconds = _docker_cli(env, "push", ref)
        finally:
            subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)
    return code, output, seconds, proxy


def _upload_starts(proxy: FaultProxy) -> int:
    return sum(
        1 for method, path, _ in proxy.log if method == "POST" and path.endswith("/uploads/")
    )


@pytest.mark.integration
@needs_registry
def test_engine_retries_a_503_on_a_layer_upload(
    registry: Registry, docker_env: dict[str, str]
) -> None:
    """The engine retries a failed *layer* upload by itself (5 s later), whole upload again."""
    _docker()
    plan = FaultPlan().add(status(503), method="POST", path=UPLOAD_START)
    code, output, seconds, proxy = _push_through(registry, plan, docker_env)
    assert code == 0, output
    assert proxy.faults_injected == 1
    assert "Retrying in 5 seconds" in output
    assert seconds >= 4
    # layer: failed POST + POST/PATCH/PUT again; config blob: POST/PATCH/PUT; then the manifest.
    assert _upload_starts(proxy) == 3
    assert proxy.log[-1][:2] == ("PUT", "/v2/t/busybox/manifests/1")
    digest = registry.manifest_digest("t/busybox", "1")
    assert digest is not None and f"digest: {digest}" in output
    if not missing_binaries("skopeo"):
        assert registry.skopeo_digest("t/busybox", "1") == digest


@pytest.mark.integration
@needs_registry
def test_engine_retries_a_reset_during_a_layer_patch(
    registry: Registry, docker_env: dict[str, str]
) -> None:
    _docker()
    plan = FaultPlan().add(reset(), method="PATCH", path=UPLOAD_ANY)
    code, output, _, proxy = _push_through(registry, plan, docker_env)
    assert code == 0, output
    assert proxy.faults_injected == 1
    assert "Retrying in 5 seconds" in output
    assert registry.manifest_digest("t/busybox", "1") is not None


@pytest.mark.integration
@needs_registry
@pytest.mark.parametrize(
    ("label", "plan", "message"),
    [
        pytest.param(
            "429 on the layer upload (never retried)",
            FaultPlan().add(status(429, retry_after=1), method="POST", path=UPLOAD_START),
            "toomanyrequests",
            id="429-layer-upload",
        ),
        pytest.param(
            "503 on the config blob upload (only layers are retried)",
            FaultPlan().add(status(503), method="POST", path=UPLOAD_START, skip=1),
            "503 Service Unavailable",
            id="503-config-upload",
        ),
        pytest.param(
            "503 on the manifest PUT",
            FaultPlan().add(status(503), method="PUT", path=r"/manifests/"),
            "503 Service Unavailable",
            id="503-manifest-put",
        ),
        pytest.param(
            "reset on the manifest PUT",
            FaultPlan().add(reset(), method="PUT", path=r"/manifests/"),
            "connection reset by peer",
            id="reset-manifest-put",
        ),
    ],
)
def test_engine_does_not_retry(
    registry: Registry, docker_env: dict[str, str], label: str, plan: FaultPlan, message: str
) -> None:
    """Faults the engine gives up on at once: shipit must retry these itself."""
    _docker()
    code, output, seconds, proxy = _push_through(registry, plan, docker_env)
    assert code != 0, f"{label}: push unexpectedly succeeded\n{output}"
    assert message in output, output
    assert "Retrying" not in output
    assert seconds < 4
    assert proxy.faults_injected == 1
    assert registry.manifest_digest("t/busybox", "1") is None


@pytest.mark.integration
@needs_registry
def test_engine_login_push_and_distribution_inspect_over_http(
    auth_registry: Registry, docker_env: dict[str, str]
) -> None:
    client = _docker()
    import docker
    import docker.errors

    code, output, _ = _docker_cli(
        docker_env, "login", "-u", "alice", "--password-stdin", auth_registry.address, stdin="nope"
    )
    assert code != 0 and "401 Unauthorized" in output
    code, output, _ = _docker_cli(
        docker_env,
        "login",
        "-u",
        "alice",
        "--password-stdin",
        auth_registry.address,
        stdin="s3cret",
    )
    assert code == 0 and "Login Succeeded" in output, output

    ref = auth_registry.reference("t/busybox", "1")
    client.images.get(BUSYBOX).tag(ref)
    try:
        events = list(
            client.api.push(ref, auth_config=auth_registry.auth_config(), stream=True, decode=True)
        )
        pushed = next(e["aux"]["Digest"] for e in events if "aux" in e)
        fresh = docker.APIClient()  # no cached login
        dist = fresh.inspect_distribution(ref, auth_config=auth_registry.auth_config())
        assert dist["Descriptor"]["digest"] == pushed
        assert dist["Descriptor"]["mediaType"] == (
            "application/vnd.docker.distribution.manifest.v2+json"
        )
        assert auth_registry.manifest_digest("t/busybox", "1") == pushed
        with pytest.raises(docker.errors.APIError, match="no basic auth credentials"):
            fresh.inspect_distribution(ref)
        with pytest.raises(docker.errors.NotFound):
            fresh.inspect_distribution(
                auth_registry.reference("t/busybox", "missing"),
                auth_config=auth_registry.auth_config(),
            )
    finally:
        client.images.remove(ref)


@pytest.mark.integration
def test_ecr_end_to_end_with_moto(tmp_path: Path) -> None:
    reason = ecr_environment_ready() or moto_server_missing()
    if reason:
        pytest.skip(reason)
    client = _docker()
    import boto3
    import docker

    setup = ecr_setup()
    assert setup is not None
    with (
        running_moto_server() as moto,
        running_ecr_registry(tmp_path / "ecr", setup.tls_dir, setup.host) as reg,
    ):
        assert reg.registry == setup.host
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        ecr = session.client("ecr", endpoint_url=moto.endpoint_url)
        ecr.create_repository(repositoryName="team/app")
        data = ecr.get_authorization_token()["authorizationData"][0]
        username, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
        assert data["proxyEndpoint"] == f"https://{setup.host}"
        auth = {"username": username, "password": password}
        assert client.login(username, password, registry=data["proxyEndpoint"], reauth=True)[
            "Status"
        ] == ("Login Succeeded")
        ref = reg.reference("team/app", "1")
        client.images.get(BUSYBOX).tag(ref)
        try:
            events = list(client.api.push(ref, auth_config=auth, stream=True, decode=True))
            assert not [e for e in events if "error" in e], events
            pushed = next(e["aux"]["Digest"] for e in events if "aux" in e)
            dist = docker.APIClient().inspect_distribution(ref, auth_config=auth)
            assert dist["Descriptor"]["digest"] == pushed
            assert reg.manifest_digest("team/app", "1") == pushed
            if not missing_binaries("skopeo"):
                assert reg.skopeo_digest("team/app", "1") == pushed
        finally:
            client.images.remove(ref)


# -- helpers -------------------------------------------------------------------------------


def _upload_blob(base_url: str, auth: tuple[str, str] | None, repo: str, blob: bytes) -> str:
    """Monolithic-in-chunks upload: POST, chunked PATCH, PUT ?digest=. Returns the digest."""
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with _session() as session:
        start = session.post(f"{base_url}/v2/{repo}/blobs/uploads/", auth=auth, timeout=10)
        start.raise_for_status()
        location = start.headers["Location"]
        assert location.startswith((base_url, "/")), location

        def pieces() -> Iterator[bytes]:
            for offset in range(0, len(blob), 256 * 1024):
                yield blob[offset : offset + 256 * 1024]

        patch = session.patch(
            location,
            data=pieces(),  # no length: requests sends Transfer-Encoding: chunked
            auth=auth,
            headers={"Content-Type": "application/octet-stream"},
            timeout=30,
        )
        patch.raise_for_status()
        location = patch.headers["Location"]
        separator = "&" if "?" in location else "?"
        put = session.put(f"{location}{separator}digest={digest}", auth=auth, timeout=10)
        put.raise_for_status()
    return digest


def _push_tiny_image(base_url: str, auth: tuple[str, str] | None, repo: str, tag: str) -> str:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    config_digest = _upload_blob(base_url, auth, repo, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    with _session() as session:
        put = session.put(
            f"{base_url}/v2/{repo}/manifests/{tag}",
            data=manifest,
            auth=auth,
            headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=10,
        )
    put.raise_for_status()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()
