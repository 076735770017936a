"""Registry credentials provider: Credentials answers, and the token-authority fallback codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import pytest

from shipit.adapters.engine.buildkit.auth import (
    CREDENTIALS,
    DOCKER_HUB_CONFIG_KEY,
    FETCH_TOKEN,
    GET_TOKEN_AUTHORITY,
    VERIFY_TOKEN_AUTHORITY,
    AuthProvider,
    config_key,
    decode_host,
)
from shipit.adapters.engine.buildkit.wire import field_bytes, field_string, fields

FIXTURES = Path(__file__).parent / "fixtures" / "session"


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


class Metadatum(NamedTuple):
    key: str
    value: str


class FakeContext:
    """The parts of grpc.ServicerContext the providers use; abort raises like grpcio's."""

    def __init__(self, metadata: dict[str, str] | None = None):
        self.metadata = [Metadatum(k, v) for k, v in (metadata or {}).items()]
        self.callbacks: list[Callable[[], None]] = []
        self.active = True

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)

    def invocation_metadata(self) -> list[Metadatum]:
        return self.metadata

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.callbacks.append(callback)
        return True

    def is_active(self) -> bool:
        return self.active


def test_credentials_answer_username_and_secret_for_the_host_asked() -> None:
    provider = AuthProvider(lambda host: ("me", "pa55") if host == "127.0.0.1:5000" else None)
    answer = provider.credentials(field_string(1, "127.0.0.1:5000"), FakeContext())
    assert fields(answer) == {1: [b"me"], 2: [b"pa55"]}
    assert provider.asked == ["127.0.0.1:5000"]
    assert provider.calls == [("Credentials", "127.0.0.1:5000")]


def test_unknown_host_is_anonymous_not_an_error() -> None:
    provider = AuthProvider(lambda host: None)
    assert provider.credentials(field_string(1, "elsewhere:5000"), FakeContext()) == b""


def test_identity_token_is_a_secret_without_username() -> None:
    answer = AuthProvider(lambda host: ("", "idtoken")).credentials(
        field_string(1, "h"), FakeContext()
    )
    assert fields(answer) == {2: [b"idtoken"]}


def test_lookup_failure_is_unavailable_without_its_text() -> None:
    def lookup(host: str) -> tuple[str, str] | None:
        raise RuntimeError("helper printed the password hunter2")

    with pytest.raises(Aborted) as failure:
        AuthProvider(lookup).credentials(field_string(1, "reg:5000"), FakeContext())
    assert failure.value.code == grpc.StatusCode.UNAVAILABLE
    assert "reg:5000" in failure.value.details
    assert "hunter2" not in failure.value.details


@pytest.mark.parametrize("method", ["no_token_authority"])
def test_token_authority_is_unavailable_so_buildkit_falls_back_to_credentials(method: str) -> None:
    # util/resolver/authorizer.go: GetTokenAuthority UNIMPLEMENTED or UNAVAILABLE -> credentials.
    provider = AuthProvider(lambda host: None)
    request = field_string(1, "h") + field_bytes(2, b"salt")
    with pytest.raises(Aborted) as failure:
        getattr(provider, method)(request, FakeContext())
    assert failure.value.code == grpc.StatusCode.UNAVAILABLE
    assert provider.calls == [("TokenAuthority", "h")]


def test_fetch_token_is_left_to_the_engine() -> None:
    with pytest.raises(Aborted) as failure:
        AuthProvider(lambda host: None).fetch_token(field_string(2, "h"), FakeContext())
    assert failure.value.code == grpc.StatusCode.UNIMPLEMENTED


def test_handlers_cover_the_whole_auth_service() -> None:
    handlers: dict[str, Any] = AuthProvider(lambda host: None).handlers()
    assert set(handlers) == {CREDENTIALS, FETCH_TOKEN, GET_TOKEN_AUTHORITY, VERIFY_TOKEN_AUTHORITY}


def test_docker_hub_host_maps_to_its_config_key() -> None:
    assert config_key("registry-1.docker.io") == DOCKER_HUB_CONFIG_KEY
    assert config_key("127.0.0.1:5000") == "127.0.0.1:5000"


def test_recorded_engine_request_decodes() -> None:
    """A CredentialsRequest as dockerd 20.10 sent it (recorded by the integration tests)."""
    recorded = (FIXTURES / "credentials_request.bin").read_bytes()
    assert decode_host(recorded) == "127.0.0.1:5000"
    calls = json.loads((FIXTURES / "calls.json").read_text())
    # A basic-auth registry: dockerd 20.10 goes straight to Credentials.
    assert calls["private_from"] == [CREDENTIALS]
