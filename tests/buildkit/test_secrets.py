"""Secrets provider: docker's --secret syntax, sources, and GetSecret answers."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from shipit.adapters.engine.buildkit.secrets import (
    GET_SECRET,
    MAX_SECRET_SIZE,
    SecretSource,
    SecretSourceError,
    SecretsProvider,
    decode_secret_id,
)
from shipit.adapters.engine.buildkit.wire import field_message, field_string, fields
from shipit.errors import ExitCode
from tests.buildkit.test_auth import Aborted, FakeContext

FIXTURES = Path(__file__).parent / "fixtures" / "session"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("id=npm,src=/run/npmrc", SecretSource("npm", path="/run/npmrc")),
        ("id=npm,source=/run/npmrc", SecretSource("npm", path="/run/npmrc")),
        ("type=file,id=npm,src=/run/npmrc", SecretSource("npm", path="/run/npmrc")),
        ("id=tok,env=API_TOKEN", SecretSource("tok", env="API_TOKEN")),
        ("type=env,id=tok,src=API_TOKEN", SecretSource("tok", env="API_TOKEN")),
        # Neither source: an environment variable named like the id wins over a file.
        ("id=HOME_TOKEN", SecretSource("HOME_TOKEN", env="HOME_TOKEN")),
        ("id=./key.txt", SecretSource("./key.txt", path="./key.txt")),
    ],
)
def test_parse_follows_docker_syntax(spec: str, expected: SecretSource) -> None:
    assert SecretSource.parse(spec, {"HOME_TOKEN": "x"}) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("src=/x", "id=ID is required"),
        ("id=", "id=ID is required"),
        ("id=a,src=/x,env=B", "not both"),
        ("id=a,type=ssh", "type must be file or env"),
        ("id=a,mode=0400", "expected id=ID"),
        ("justaword", "expected id=ID"),
    ],
)
def test_parse_rejects_bad_specs_as_usage_errors(spec: str, message: str) -> None:
    with pytest.raises(SecretSourceError, match=message) as failure:
        SecretSource.parse(spec, {})
    assert failure.value.exit_code == ExitCode.USAGE


def test_sources_are_read_from_files_and_environment(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"from-file\n")
    provider = SecretsProvider.from_sources(
        [SecretSource("a", path=str(tmp_path / "f")), SecretSource("b", env="B")],
        {"B": "from-env"},
    )
    assert provider.ids == ["a", "b"]
    answer = provider.get_secret(field_string(1, "a"), FakeContext())
    assert fields(answer) == {1: [b"from-file\n"]}
    assert fields(provider.get_secret(field_string(1, "b"), FakeContext())) == {1: [b"from-env"]}


def test_missing_sources_fail_before_any_build_naming_the_secret(tmp_path: Path) -> None:
    with pytest.raises(SecretSourceError, match=r"secret 'a': file .*nope does not exist"):
        SecretsProvider.from_sources([SecretSource("a", path=str(tmp_path / "nope"))], {})
    with pytest.raises(SecretSourceError, match="environment variable B is not set"):
        SecretsProvider.from_sources([SecretSource("b", env="B")], {})
    with pytest.raises(SecretSourceError, match="is a directory"):
        SecretsProvider.from_sources([SecretSource("d", path=str(tmp_path))], {})


def test_oversized_and_duplicate_secrets_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_SECRET_SIZE + 1))
    with pytest.raises(SecretSourceError, match="at most"):
        SecretsProvider.from_sources([SecretSource("big", path=str(big))], {})
    with pytest.raises(SecretSourceError, match="given twice"):
        SecretsProvider.from_sources(
            [SecretSource("a", env="A"), SecretSource("a", env="A")], {"A": "1"}
        )


def test_unknown_id_is_not_found_so_buildkit_skips_optional_mounts() -> None:
    provider = SecretsProvider({"known": b"v"})
    with pytest.raises(Aborted) as failure:
        provider.get_secret(field_string(1, "unknown"), FakeContext())
    assert failure.value.code == grpc.StatusCode.NOT_FOUND
    assert "unknown" in failure.value.details


def test_empty_secret_is_an_empty_answer_not_an_error() -> None:
    assert SecretsProvider({"e": b""}).get_secret(field_string(1, "e"), FakeContext()) == b""


def test_values_never_show_in_repr() -> None:
    provider = SecretsProvider({"tok": b"hunter2"})
    assert "hunter2" not in repr(provider)
    assert "tok" in repr(provider)


def test_request_with_annotations_decodes_its_id() -> None:
    # GetSecretRequest{ID: "npm", annotations: {"k": "v"}} (a map entry is a nested message).
    entry = field_string(1, "k") + field_string(2, "v")
    assert decode_secret_id(field_string(1, "npm") + field_message(2, entry)) == "npm"


def test_recorded_engine_request_decodes() -> None:
    """A GetSecretRequest as dockerd 20.10 sent it (recorded by the integration tests)."""
    recorded = (FIXTURES / "getsecret_request.bin").read_bytes()
    assert decode_secret_id(recorded) == "filetok"


def test_handler_table_serves_get_secret() -> None:
    assert list(SecretsProvider({}).handlers()) == [GET_SECRET]
