"""`--registry dockerhub`, end to end, against a registry that behaves like Docker Hub.

registry-1.docker.io is a real distribution registry with token auth and TLS; auth.docker.io
is a token server issuing ES256 JWTs for the requested scopes (tests/support/dockerhub.py).
The CLI runs unmodified (`python -m shipit`) with DOCKERHUB_USERNAME / DOCKERHUB_TOKEN /
DOCKERHUB_NAMESPACE, through the real engine. Results are checked independently: skopeo, and
the registry's API with tokens of our own. Needs `.ci/dockerhub-setup` (CI only).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_shipit
from tests.support.dockerhub import (
    DockerHub,
    dockerhub_environment_ready,
    engine_trust_problem,
    running_dockerhub,
)
from tests.support.registry import MANIFEST_ACCEPT
from tests.support.tokenserver import Account

integration = pytest.mark.integration

USER = "shipitci"
TOKEN = "dckr_pat_" + "Sh1pitC1-token-for-tests"  # an access token, as Docker Hub issues them
ORG = "acme"  # DOCKERHUB_NAMESPACE: an organisation the user may push to
OUTSIDER, OUTSIDER_TOKEN = "mallory", "dckr_pat_" + "mallory-token"
READER, READER_TOKEN = "reader", "dckr_pat_" + "read-only-token"  # may pull acme, not push
VERSION = "1.0.0"


@dataclass
class Project:
    """A tiny app (FROM scratch + one file) that `shipit build` builds in about a second."""

    path: Path
    name: str

    def build(self, content: str, *tags: str) -> dict[str, Any]:
        """Build with ``tags`` (shipit options), by default ``--version 1.0.0``."""
        (self.path / "app.txt").write_text(content)
        result = run_shipit("build", "--json", *(tags or ("--version", VERSION)), cwd=self.path)
        assert result.returncode == 0, result.stderr[-2000:]
        data: dict[str, Any] = json.loads(result.stdout)
        return data


@pytest.fixture
def hub(tmp_path: Path, docker_api: Any) -> Iterator[DockerHub]:
    reason = dockerhub_environment_ready()
    if reason:
        pytest.skip(f"Docker Hub stand-in unavailable: {reason}")
    accounts = [
        Account(USER, TOKEN, namespaces=(ORG,)),
        Account(OUTSIDER, OUTSIDER_TOKEN),
        Account(READER, READER_TOKEN, namespaces=(ORG,), read_only=True),
    ]
    with running_dockerhub(tmp_path / "hub", accounts) as running:
        problem = engine_trust_problem(running, USER, tmp_path)
        if problem:
            pytest.skip(problem)  # a failure in CI (SHIPIT_REQUIRE_DOCKER=1)
        running.tokens.requests.clear()  # the probe's token request is not the test's
        yield running


@pytest.fixture
def project(tmp_path: Path, docker_api: Any) -> Iterator[Project]:
    path = tmp_path / "app"
    path.mkdir()
    name = f"shipit-dh-{uuid.uuid4().hex[:8]}"
    (path / "Dockerfile").write_text("FROM scratch\nCOPY app.txt /\n")
    (path / "pyproject.toml").write_text(f'[tool.shipit]\nname = "{name}"\n')
    (path / "app.txt").write_text("v1\n")
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "app"], check=True)
    yield Project(path, name)
    images = docker_api.images(name=name) + docker_api.images(name=f"{ORG}/{name}")
    for image in images:
        for ref in image.get("RepoTags") or []:
            with contextlib.suppress(Exception):
                docker_api.remove_image(ref, force=True)


def _env(tmp_path: Path, user: str = USER, token: str = TOKEN) -> dict[str, str]:
    return {
        "DOCKERHUB_USERNAME": user,
        "DOCKERHUB_TOKEN": token,
        "DOCKERHUB_NAMESPACE": ORG,
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
    }


def _push(project: Project, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["push", "--registry", "dockerhub", "--version", VERSION, "--json", *extra]
    return run_shipit(*args, env=env, cwd=project.path, timeout=300)


def _assert_complete(hub: DockerHub, repo: str, tag: str, digest: str) -> None:
    """The tag serves ``digest`` (skopeo agrees) and every blob it names can be fetched."""
    assert hub.skopeo_digest(repo, tag, USER) == digest
    served, manifest = hub.manifest(repo, tag, USER)
    assert served == digest
    for blob in [manifest["config"], *manifest["layers"]]:
        response = hub.request("HEAD", repo, f"blobs/{blob['digest']}", USER)
        assert response.status_code == 200, (tag, blob["digest"], response.status_code)


@integration
def test_login_and_push_land_every_tag_with_bearer_scopes(
    hub: DockerHub, project: Project, tmp_path: Path
) -> None:
    built = project.build("v1\n")
    env = _env(tmp_path)
    login = run_shipit("login", "--registry", "dockerhub", env=env, cwd=project.path)
    assert login.returncode == 0, login.stderr
    assert TOKEN not in login.stdout + login.stderr
    config = json.loads((tmp_path / "docker-config" / "config.json").read_text())
    assert "https://index.docker.io/v1/" in config["auths"]

    result = _push(project, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert TOKEN not in result.stdout + result.stderr
    pushed = json.loads(result.stdout)["pushed"]
    repo = f"{ORG}/{project.name}"
    tags = [t.split(":", 1)[1] for t in built["tags"]]
    assert [p["reference"] for p in pushed] == [f"docker.io/{repo}:{t}" for t in tags]
    # One engine push; every other tag copied through the registry API.
    assert [p["status"] for p in pushed] == ["pushed"] + ["tagged"] * (len(tags) - 1)
    digests = {p["digest"] for p in pushed}
    assert len(digests) == 1
    digest = digests.pop()
    for tag in tags:
        _assert_complete(hub, repo, tag, digest)
    assert hub.tags(repo, USER) == sorted(tags)

    # The token server granted exactly the scopes asked for, to the right user: push and pull
    # on the organisation's repository, for the engine and for shipit's own registry client.
    granted = hub.tokens.granted_scopes(USER)
    assert f"repository:{repo}:pull" in granted  # the release-tag check
    assert any(g.startswith(f"repository:{repo}:") and "push" in g for g in granted)
    agents = {r.user_agent.split("/")[0] for r in hub.tokens.requests if r.account == USER}
    assert {"docker", "python-requests"} <= agents, agents

    # A second run: the release tag is already this image, nothing moves.
    again = _push(project, env)
    assert again.returncode == 0, again.stderr[-3000:]
    statuses = {p["reference"].rsplit(":", 1)[1]: p for p in json.loads(again.stdout)["pushed"]}
    assert statuses[VERSION]["status"] == "unchanged"
    assert {p["digest"] for p in statuses.values()} == {digest}


@integration
def test_release_tag_guard_refuses_a_different_image(
    hub: DockerHub, project: Project, tmp_path: Path
) -> None:
    project.build("v1\n")
    env = _env(tmp_path)
    first = _push(project, env)
    assert first.returncode == 0, first.stderr[-3000:]
    repo = f"{ORG}/{project.name}"
    released = hub.skopeo_digest(repo, VERSION, USER)

    project.build("v2: a different image under the same version\n")
    second = _push(project, env)
    assert second.returncode == 6, second.stderr[-3000:]
    assert "already exists with a different image" in second.stderr
    assert "--allow-overwrite" in second.stderr
    assert "Traceback" not in second.stderr
    # Nothing moved: the release tag and its siblings still serve the first image.
    for tag in (VERSION, "1.0", "1", "latest"):
        _assert_complete(hub, repo, tag, released)


@integration
def test_wrong_token_exits_3_without_leaking(
    hub: DockerHub, project: Project, tmp_path: Path
) -> None:
    project.build("v1\n")
    wrong = "dckr_pat_" + "wrong-token-value"
    env = _env(tmp_path, token=wrong)
    login = run_shipit("login", "--registry", "dockerhub", env=env, cwd=project.path)
    assert login.returncode == 3, login.stderr
    push = _push(project, env)
    assert push.returncode == 3, push.stderr
    for result in (login, push):
        assert wrong not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert hub.tags(f"{ORG}/{project.name}", USER) == []


@integration
def test_push_to_a_namespace_without_access_exits_3(
    hub: DockerHub, project: Project, tmp_path: Path
) -> None:
    """Valid credentials, but the token server grants no scope on someone else's namespace."""
    project.build("v1\n")
    push = _push(project, _env(tmp_path, user=OUTSIDER, token=OUTSIDER_TOKEN))
    assert push.returncode == 3, push.stderr[-3000:]
    assert OUTSIDER_TOKEN not in push.stdout + push.stderr
    assert "Traceback" not in push.stderr
    assert hub.tags(f"{ORG}/{project.name}", USER) == []
    assert all(not r.granted for r in hub.tokens.requests if r.account == OUTSIDER)


@integration
def test_read_only_access_token_cannot_push(
    hub: DockerHub, project: Project, tmp_path: Path
) -> None:
    """A read-only token passes the pull-scoped release check but the engine's push is
    denied: exit 3, nothing lands, the token is never printed."""
    project.build("v1\n")
    push = _push(project, _env(tmp_path, user=READER, token=READER_TOKEN))
    assert push.returncode == 3, push.stderr[-3000:]
    assert READER_TOKEN not in push.stdout + push.stderr
    assert "Traceback" not in push.stderr
    assert hub.tags(f"{ORG}/{project.name}", USER) == []
    granted = hub.tokens.granted_scopes(READER)
    assert granted and all(g.endswith(":pull") for g in granted), granted


@integration
@pytest.mark.parametrize(
    ("where", "scope"),
    [
        # shipit's release-tag check asks for a pull-only token first.
        ("registry client", r":pull$"),
        # No release tag: the engine's push is the first to ask (pull,push).
        ("engine push", r"push"),
    ],
)
def test_docker_hub_rate_limit_is_reported_with_its_hint(
    hub: DockerHub,
    project: Project,
    tmp_path: Path,
    where: str,
    scope: str,
) -> None:
    tags = ("--tag", "edge") if where == "engine push" else ("--version", VERSION)
    project.build("v1\n", *tags)
    hub.tokens.rate_limit(scope)
    env = _env(tmp_path)
    args = ["push", "--registry", "dockerhub", *tags, "--json", "--retries", "2"]
    args += ["--retry-timeout", "5"]
    result = run_shipit(*args, env=env, cwd=project.path, timeout=300)
    assert result.returncode == 6, result.stderr[-3000:]
    assert "rate limit" in result.stderr.lower(), result.stderr[-3000:]
    assert "Docker Hub limits" in result.stderr  # the hint
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert hub.tokens.rate_limited_requests() >= 1
    hub.tokens.clear_rate_limits()
    assert hub.tags(f"{ORG}/{project.name}", USER) == []


@integration
def test_stand_in_answers_like_docker_hub(hub: DockerHub) -> None:
    """The pieces the flow relies on: the challenge names auth.docker.io, tokens carry only the
    granted scope, wrong credentials get 401, and POST (OAuth2) works as the engine uses it."""
    import requests

    with requests.Session() as session:
        session.trust_env = False
        ping = session.get("https://registry-1.docker.io/v2/", verify=hub.ca_bundle, timeout=10)
        assert ping.status_code == 401
        challenge = ping.headers["WWW-Authenticate"]
        assert 'realm="https://auth.docker.io/token"' in challenge
        assert 'service="registry.docker.io"' in challenge
        refused = session.get(
            "https://auth.docker.io/token",
            params={"service": "registry.docker.io", "scope": f"repository:{ORG}/x:pull"},
            auth=(USER, "not-the-token"),
            verify=hub.ca_bundle,
            timeout=10,
        )
        assert refused.status_code == 401
        posted = session.post(
            "https://auth.docker.io/token",
            data={
                "grant_type": "password",
                "username": USER,
                "password": TOKEN,
                "service": "registry.docker.io",
                "scope": f"repository:{ORG}/x:pull",
                "client_id": "docker",
            },
            verify=hub.ca_bundle,
            timeout=10,
        )
        assert posted.status_code == 200
        token = posted.json()["access_token"]
        # A pull token cannot start an upload.
        upload = session.post(
            f"https://registry-1.docker.io/v2/{ORG}/x/blobs/uploads/",
            headers={"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT},
            verify=hub.ca_bundle,
            timeout=10,
        )
        assert upload.status_code == 401
        assert "insufficient_scope" in upload.headers.get("WWW-Authenticate", "")


# -- the token server itself (no engine, no TLS, no root) ---------------------------------


def _jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    import base64

    def decode(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    header, claims, signature = token.split(".")
    signing_input = f"{header}.{claims}".encode()
    return json.loads(decode(header)), json.loads(decode(claims)), signing_input, decode(signature)


def test_token_server_signs_what_distribution_verifies() -> None:
    """ES256 over header.claims, kid = libtrust fingerprint of the rootcertbundle's key, the
    service as audience, and only the granted actions in `access`."""
    import requests
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from tests.support.ports import LOOPBACK, free_port
    from tests.support.tokenserver import libtrust_key_id, running_token_server

    accounts = [Account(USER, TOKEN, namespaces=(ORG,))]
    with running_token_server(host=LOOPBACK, port=free_port(), accounts=accounts) as server:
        url = f"http://{server.address}/token"
        wanted = [f"repository:{ORG}/app:pull,push", "repository:someone-else/app:pull"]
        scopes = {"service": "registry.docker.io", "scope": wanted}
        answer = requests.get(url, params=scopes, auth=(USER, TOKEN), timeout=10)
        anonymous = requests.get(url, params=scopes, timeout=10)
        refused = requests.get(url, params=scopes, auth=(USER, "wrong"), timeout=10)
        server.rate_limit(r":pull$", times=1)
        limited = requests.get(url, params={"scope": f"repository:{ORG}/x:pull"}, timeout=10)
        after = requests.get(url, params={"scope": f"repository:{ORG}/x:pull"}, timeout=10)
    assert answer.status_code == 200
    header, claims, signing_input, signature = _jwt_parts(answer.json()["token"])
    cert = x509.load_pem_x509_certificate(server.cert_pem)
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert header == {"typ": "JWT", "alg": "ES256", "kid": libtrust_key_id(public_key)}
    assert len(header["kid"].split(":")) == 12
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public_key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))  # raises when wrong
    assert (claims["iss"], claims["aud"], claims["sub"]) == (
        "auth.docker.io",
        "registry.docker.io",
        USER,
    )
    assert claims["nbf"] <= claims["iat"] < claims["exp"]
    assert claims["access"] == [
        {"type": "repository", "name": f"{ORG}/app", "actions": ["pull", "push"]}
    ]
    assert _jwt_parts(anonymous.json()["token"])[1]["access"] == []
    assert refused.status_code == 401
    assert limited.status_code == 429
    assert limited.headers["ratelimit-remaining"].startswith("0;")
    assert limited.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert after.status_code == 200
    assert TOKEN not in repr(server.requests)


def test_missing_ci_setup_is_a_skip_reason(tmp_path: Path) -> None:
    env = {
        "SHIPIT_DOCKERHUB_TLS_DIR": str(tmp_path / "nowhere"),
        "SHIPIT_DOCKERHUB_ADDRESS": "127.0.0.2",
        "SHIPIT_DOCKERHUB_AUTH_ADDRESS": "127.0.0.3",
    }
    reason = dockerhub_environment_ready(env)
    assert reason is not None and ".ci/dockerhub-setup" in reason
