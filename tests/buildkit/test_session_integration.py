"""Build sessions on the real engine: secrets, SSH agents, registry credentials, cache import,
and a session over TCP. Each build posts ``/build?version=2`` with the session's id."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import subprocess
import tarfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shipit.adapters.engine.buildkit.auth import AuthProvider
from shipit.adapters.engine.buildkit.secrets import SecretSource, SecretsProvider
from shipit.adapters.engine.buildkit.session import Provider, Session
from shipit.adapters.engine.buildkit.sshforward import AgentSource, SSHProvider
from shipit.adapters.engine.buildkit.trace import decode_trace_chunk
from shipit.adapters.engine.buildkit.transport import BuildRequest, post_build
from tests.support import die_with_parent, missing_binaries
from tests.support.ports import free_port, wait_for_port
from tests.support.registry import Registry, running_registry

pytestmark = pytest.mark.integration

USER, PASSWORD = "bk-user", "bk-Passw0rd-for-session-tests"


@dataclass
class Result:
    """What one build streamed: the image id, the error, each step and the logs."""

    chunks: list[dict[str, Any]] = field(default_factory=list)
    image_id: str | None = None
    error: str | None = None
    cached: dict[str, bool] = field(default_factory=dict)  # step name -> cached
    logs: bytes = b""

    @property
    def text(self) -> str:
        """Everything the engine sent, decoded, to look for leaked values."""
        return repr(self.chunks) + self.logs.decode("utf-8", "replace") + repr(self.cached)


def context_tar(files: Mapping[str, str]) -> bytes:
    """A build context in GNU tar format (the engine reads a PAX archive as a Dockerfile)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(
    api: Any,
    dockerfile: str,
    providers: list[Provider],
    *,
    files: Mapping[str, str] | None = None,
    with_session: bool = True,
    **request: Any,
) -> Result:
    result = Result()
    body = context_tar({"Dockerfile": dockerfile, **(files or {})})
    with Session(api, providers, name="bk-test") if with_session else contextlib.nullcontext() as s:
        session_id = s.id if isinstance(s, Session) else None
        for chunk in post_build(api, BuildRequest(session_id=session_id, **request), body):
            result.chunks.append(chunk)
            status = decode_trace_chunk(chunk)
            if status is not None:
                for vertex in status.vertexes:
                    if vertex.name:
                        result.cached[vertex.name] = vertex.cached or result.cached.get(
                            vertex.name, False
                        )
                result.logs += b"".join(log.data for log in status.logs)
            elif chunk.get("id") == "moby.image.id":
                result.image_id = chunk["aux"]["ID"]
            elif "errorDetail" in chunk:
                result.error = chunk["errorDetail"].get("message", "")
    if result.image_id and not request.get("tags"):  # untagged: nothing else would remove it
        with contextlib.suppress(Exception):
            api.remove_image(result.image_id, force=True)
    return result


def run_step(result: Result, needle: str) -> str:
    names = [name for name in result.cached if needle in name and name.startswith("[")]
    assert len(names) == 1, (needle, list(result.cached))
    return names[0]


def docker(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", *args], capture_output=True, check=True, env=env, timeout=120)


# ---------------------------------------------------------------- secrets


def test_secrets_from_file_and_env_reach_run_and_leave_no_trace(
    docker_api: Any, busybox_image: str, engine_cleanup: Any, unique: str, tmp_path: Path
) -> None:
    file_value, env_value = f"file-{secrets.token_hex(16)}", f"env-{secrets.token_hex(16)}"
    (tmp_path / "token.txt").write_text(file_value)
    environ = {"BK_ENV_TOKEN": env_value}
    sources = [
        SecretSource.parse(f"id=filetok,src={tmp_path / 'token.txt'}", environ),
        SecretSource.parse("id=envtok,env=BK_ENV_TOKEN", environ),
    ]
    tag = f"shipit-bk-secret-{unique}:1"
    engine_cleanup.images.append(tag)
    dockerfile = (
        f"FROM {busybox_image}\n"
        "RUN --mount=type=secret,id=filetok,required=true --mount=type=secret,id=envtok "
        "busybox sha256sum /run/secrets/filetok /run/secrets/envtok\n"
        # An optional secret nobody gave is skipped (NOT_FOUND), not an error.
        "RUN --mount=type=secret,id=optional test ! -e /run/secrets/optional && echo skipped\n"
    )
    result = build(
        docker_api, dockerfile, [SecretsProvider.from_sources(sources, environ)], tags=[tag]
    )
    assert result.error is None, result.error
    for value in (file_value, env_value):
        assert hashlib.sha256(value.encode()).hexdigest().encode() in result.logs
    assert b"skipped" in result.logs
    history = docker("history", "--no-trunc", tag).stdout
    saved = docker("save", tag).stdout  # layers are plain tars inside: a substring search works
    for value in (file_value, env_value):
        assert value not in result.text
        assert value.encode() not in history
        assert value.encode() not in saved


def test_missing_required_secret_fails_naming_it(docker_api: Any, busybox_image: str) -> None:
    dockerfile = (
        f"FROM {busybox_image}\n"
        "RUN --mount=type=secret,id=deploy_key,required=true cat /run/secrets/deploy_key\n"
    )
    result = build(docker_api, dockerfile, [SecretsProvider({"other": b"x"})], nocache=True)
    assert result.image_id is None
    assert result.error is not None
    assert "deploy_key" in result.error
    assert "not found" in result.error


def test_without_a_session_secrets_fail_with_no_active_sessions(
    docker_api: Any, busybox_image: str
) -> None:
    """The baseline the session fixes (seen on 20.10): proves the tests above need it."""
    dockerfile = f"FROM {busybox_image}\nRUN --mount=type=secret,id=s,required=true true\n"
    result = build(docker_api, dockerfile, [], with_session=False, nocache=True)
    assert result.error is not None
    assert "no active session" in result.error


# ---------------------------------------------------------------- ssh

# Python in the step speaks the agent protocol itself (the base images have no ssh client):
# list the identities, then try to remove them all, which must be refused (read-only agent).
AGENT_PROBE = r"""
import os, socket, struct
def ask(payload):
    s = socket.socket(socket.AF_UNIX); s.connect(os.environ["SSH_AUTH_SOCK"])
    s.sendall(struct.pack(">I", len(payload)) + payload)
    size = struct.unpack(">I", s.recv(4))[0]; data = b""
    while len(data) < size: data += s.recv(size - len(data))
    return data
answer = ask(b"\x0b")
assert answer[0] == 12, answer[:1]
count = struct.unpack(">I", answer[1:5])[0]; pos = 5; comments = []
for _ in range(count):
    n = struct.unpack(">I", answer[pos:pos + 4])[0]; pos += 4 + n
    n = struct.unpack(">I", answer[pos:pos + 4])[0]; comments.append(answer[pos + 4:pos + 4 + n].decode()); pos += 4 + n
print("identities", count, *comments)
print("remove-all answer", ask(b"\x13")[0])
"""


@pytest.fixture
def ssh_agent(tmp_path: Path, unique: str) -> Iterator[tuple[str, str]]:
    """A throwaway agent holding one throwaway key: (socket path, key comment)."""
    reason = missing_binaries("ssh-agent", "ssh-add", "ssh-keygen")
    if reason:
        pytest.skip(reason)
    sock, key, comment = tmp_path / "agent.sock", tmp_path / "id_ed25519", f"shipit-bk-{unique}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], check=True
    )
    agent = subprocess.Popen(
        die_with_parent(["ssh-agent", "-D", "-a", str(sock)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(key)], check=True, env=env, capture_output=True)
        yield str(sock), comment
    finally:
        agent.terminate()
        agent.wait(10)


def test_ssh_mount_reaches_the_agent_read_only(
    docker_api: Any, python_image: str, ssh_agent: tuple[str, str]
) -> None:
    sock, comment = ssh_agent
    source = AgentSource.parse("default", {"SSH_AUTH_SOCK": sock})
    dockerfile = (
        f"FROM {python_image}\nRUN --mount=type=ssh,required=true "
        "--mount=type=bind,source=probe.py,target=/probe.py python3 /probe.py\n"
    )
    provider = SSHProvider.from_sources([source])
    result = build(
        docker_api, dockerfile, [provider], files={"probe.py": AGENT_PROBE}, nocache=True
    )
    assert result.error is None, result.error
    assert f"identities 1 {comment}".encode() in result.logs
    assert b"remove-all answer 5" in result.logs  # SSH_AGENT_FAILURE
    listed = subprocess.run(
        ["ssh-add", "-l"], env={**os.environ, "SSH_AUTH_SOCK": sock}, capture_output=True
    )
    assert comment.encode() in listed.stdout  # the key is still there


def test_ssh_mount_with_an_unknown_id_fails_naming_it(
    docker_api: Any, busybox_image: str, ssh_agent: tuple[str, str]
) -> None:
    sock, _ = ssh_agent
    provider = SSHProvider.from_sources([AgentSource("default", sock)])
    dockerfile = f"FROM {busybox_image}\nRUN --mount=type=ssh,id=github,required=true true\n"
    result = build(docker_api, dockerfile, [provider], nocache=True)
    assert result.error is not None
    assert "github" in result.error


# ---------------------------------------------------------------- registry credentials


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Registry]:
    reason = missing_binaries("docker-registry", "htpasswd")
    if reason:
        pytest.skip(reason)
    with running_registry(tmp_path / "registry", username=USER, password=PASSWORD) as registry:
        yield registry


def credentials_for(registry: Registry) -> AuthProvider:
    return AuthProvider(lambda host: (USER, PASSWORD) if host == registry.address else None)


def push(docker_api: Any, registry: Registry, image: str, repo: str) -> str:
    """Push ``image`` as REGISTRY/repo:1 and drop the local tag; the reference pushed."""
    docker_api.tag(image, f"{registry.address}/{repo}", "1")
    stream = docker_api.push(
        f"{registry.address}/{repo}",
        tag="1",
        auth_config=registry.auth_config(),
        stream=True,
        decode=True,
    )
    errors = [chunk for chunk in stream if "error" in chunk]
    assert not errors, errors
    reference = registry.reference(repo, "1")
    docker_api.remove_image(reference)
    return reference


def test_private_from_is_pulled_with_credentials_from_the_session(
    docker_api: Any,
    busybox_image: str,
    auth_registry: Registry,
    engine_cleanup: Any,
    unique: str,
) -> None:
    base = push(docker_api, auth_registry, busybox_image, f"shipit-bk-base-{unique}")
    dockerfile = f"FROM {base}\nRUN echo built-on-private-base-{unique}\n"
    anonymous = build(docker_api, dockerfile, [], nocache=True)
    assert anonymous.error is not None  # a session without the Auth service: no credentials

    provider = credentials_for(auth_registry)
    tag = f"shipit-bk-private-{unique}:1"
    engine_cleanup.images.append(tag)
    result = build(docker_api, dockerfile, [provider], tags=[tag], nocache=True)
    assert result.error is None, result.error
    assert auth_registry.address in provider.asked
    assert f"built-on-private-base-{unique}".encode() in result.logs
    assert PASSWORD not in result.text


def test_cache_from_an_authenticated_registry_onto_an_empty_builder_cache(
    docker_api: Any,
    busybox_image: str,
    auth_registry: Registry,
    engine_cleanup: Any,
    unique: str,
) -> None:
    tag = f"shipit-bk-cache-{unique}:1"
    engine_cleanup.images.append(tag)
    dockerfile = f"FROM {busybox_image}\nRUN echo {unique} $(busybox cat /proc/sys/kernel/random/uuid) > /stamp\n"
    first = build(docker_api, dockerfile, [], tags=[tag], buildargs={"BUILDKIT_INLINE_CACHE": "1"})
    assert first.error is None, first.error
    stamp = docker("run", "--rm", "--entrypoint", "busybox", tag, "cat", "/stamp").stdout
    reference = push(docker_api, auth_registry, tag, f"shipit-bk-cache-{unique}")
    docker_api.remove_image(tag)

    docker("builder", "prune", "-af")
    provider = credentials_for(auth_registry)
    second = build(docker_api, dockerfile, [provider], tags=[tag], cachefrom=[reference])
    assert second.error is None, second.error
    assert second.cached[run_step(second, "RUN echo")] is True
    assert auth_registry.address in provider.asked
    again = docker("run", "--rm", "--entrypoint", "busybox", tag, "cat", "/stamp").stdout
    assert again == stamp  # the layer came from the registry, the step did not run


# ---------------------------------------------------------------- transport


@contextlib.contextmanager
def forwarded_engine(*listen_options: str) -> Iterator[int]:
    """socat relaying 127.0.0.1:PORT to the engine's unix socket; yields PORT."""
    reason = missing_binaries("socat")
    if reason:
        pytest.skip(reason)
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip(f"the engine is not on a local unix socket ({host})")
    port = free_port()
    listen = ",".join([f"{port}", "bind=127.0.0.1", "reuseaddr", "fork", *listen_options])
    kind = "OPENSSL-LISTEN" if listen_options else "TCP-LISTEN"
    forwarder = subprocess.Popen(
        die_with_parent(
            ["socat", f"{kind}:{listen}", f"UNIX-CONNECT:{host.removeprefix('unix://')}"]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for_port(port), "socat did not listen"
        yield port
    finally:
        forwarder.terminate()
        forwarder.wait(10)


def secret_build(api: Any, busybox_image: str) -> None:
    value = secrets.token_hex(16)
    dockerfile = (
        f"FROM {busybox_image}\n"
        "RUN --mount=type=secret,id=remote,required=true busybox sha256sum /run/secrets/remote\n"
    )
    result = build(api, dockerfile, [SecretsProvider({"remote": value.encode()})], nocache=True)
    assert result.error is None, result.error
    assert hashlib.sha256(value.encode()).hexdigest().encode() in result.logs


def test_secret_build_through_an_engine_reached_over_tcp(
    docker_api: Any, busybox_image: str
) -> None:
    import docker as docker_py

    with forwarded_engine() as port:
        api = docker_py.APIClient(base_url=f"tcp://127.0.0.1:{port}", version="auto", timeout=60)
        try:
            secret_build(api, busybox_image)
        finally:
            api.close()


def test_secret_build_through_an_engine_reached_over_tls(
    docker_api: Any, busybox_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import docker as docker_py

    # requests lets these override the client's own CA (docker-py sets session.verify).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    reason = missing_binaries("openssl")
    if reason:
        pytest.skip(reason)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    with forwarded_engine(f"cert={cert}", f"key={key}", "verify=0") as port:
        tls = docker_py.tls.TLSConfig(ca_cert=str(cert), verify=True)
        api = docker_py.APIClient(
            base_url=f"tcp://127.0.0.1:{port}", version="auto", timeout=60, tls=tls
        )
        try:
            assert api.base_url.startswith("https://")
            secret_build(api, busybox_image)
        finally:
            api.close()


def test_a_silent_step_longer_than_the_read_timeout_stops_the_stream(
    busybox_image: str,
) -> None:
    """post_build keeps docker-py's read timeout (shipit's stall timeout) for every chunk."""
    import docker as docker_py
    import requests
    import urllib3

    api = docker_py.APIClient(version="auto", timeout=2, **docker_py.utils.kwargs_from_env())
    dockerfile = f"FROM {busybox_image}\nRUN sleep 8\n"
    started = time.monotonic()
    with pytest.raises((urllib3.exceptions.ReadTimeoutError, requests.exceptions.ConnectionError)):
        build(api, dockerfile, [SecretsProvider({})], nocache=True)
    assert time.monotonic() - started < 7
    api.close()


def test_private_from_on_a_token_auth_registry_as_docker_hub(
    docker_api: Any, busybox_image: str, tmp_path: Path, engine_cleanup: Any, unique: str
) -> None:
    """Bearer-token registries take BuildKit's token path: GetTokenAuthority (when the engine's
    BuildKit asks) is refused, so it falls back to Credentials and fetches the token itself."""
    from tests.support.dockerhub import (
        REGISTRY_HOST,
        dockerhub_environment_ready,
        running_dockerhub,
    )
    from tests.support.tokenserver import Account

    reason = dockerhub_environment_ready()
    if reason:
        pytest.skip(reason)
    token = f"dckr_pat_{secrets.token_hex(12)}"
    repo = f"shipitbk/base-{unique}"
    with running_dockerhub(tmp_path / "hub", [Account("shipitbk", token)]):
        docker_api.tag(busybox_image, repo, "1")
        stream = docker_api.push(
            repo,
            tag="1",
            auth_config={"username": "shipitbk", "password": token},
            stream=True,
            decode=True,
        )
        errors = [chunk for chunk in stream if "error" in chunk]
        docker_api.remove_image(f"{repo}:1")
        assert not errors, errors
        provider = AuthProvider(lambda host: ("shipitbk", token) if host == REGISTRY_HOST else None)
        tag = f"shipit-bk-hub-{unique}:1"
        engine_cleanup.images.append(tag)
        dockerfile = f"FROM {repo}:1\nRUN echo on-hub-base-{unique}\n"
        result = build(docker_api, dockerfile, [provider], tags=[tag], nocache=True)
    assert result.error is None, result.error
    assert REGISTRY_HOST in provider.asked
    # dockerd 20.10 asks GetTokenAuthority first, and takes the refusal as "use Credentials".
    methods = [method for method, _ in provider.calls]
    assert methods[-1] == "Credentials"
    assert "FetchToken" not in methods
    assert token not in result.text


def test_a_long_build_keeps_its_session_through_the_engines_health_checks(
    docker_api: Any, busybox_image: str
) -> None:
    """dockerd checks the session every 5 s and drops it after two failures: a secret read
    after an 11 s step proves the bridge answered them."""
    value = secrets.token_hex(16)
    dockerfile = (
        f"FROM {busybox_image}\n"
        "RUN sleep 11\n"
        "RUN --mount=type=secret,id=late,required=true busybox sha256sum /run/secrets/late\n"
    )
    result = Result()
    body = context_tar({"Dockerfile": dockerfile})
    with Session(docker_api, [SecretsProvider({"late": value.encode()})]) as session:
        for chunk in post_build(
            docker_api, BuildRequest(session_id=session.id, nocache=True), body
        ):
            status = decode_trace_chunk(chunk)
            if status is not None:
                result.logs += b"".join(log.data for log in status.logs)
            elif chunk.get("id") == "moby.image.id":
                result.image_id = chunk["aux"]["ID"]
            elif "errorDetail" in chunk:
                result.error = chunk["errorDetail"].get("message", "")
        assert session.alive
    if result.image_id:  # untagged: removed here, or left behind on the engine
        docker_api.remove_image(result.image_id, force=True)
    assert result.error is None, result.error
    assert session.health_checks >= 2
    assert hashlib.sha256(value.encode()).hexdigest().encode() in result.logs
