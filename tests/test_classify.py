"""Every error text the engine and the registries produce, with its class, exit code and retry.

The texts are the real ones: distribution's errcode strings (``CODE: message`` with the code
lower-cased and ``_`` read as a space, as the engine prints them), ECR's and Docker Hub's
wording, Go ``net/http`` errors the engine passes on, what our own registry client builds
from an OCI error body and the HTTP status, and texts seen through tests/support/faultproxy.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shipit.adapters.classify import (
    RULES,
    classify_registry_message,
    parse_retry_after,
    parse_retry_after_header,
    rule_for,
)
from shipit.errors import AuthError, ExitCode, RegistryError

AUTH, REG = ExitCode.AUTH, ExitCode.REGISTRY
# (text, HTTP status or None, kind, exit code, transient)
Row = tuple[str, int | None, str, int, bool]

DISTRIBUTION: list[Row] = [
    ("unauthorized: authentication required", None, "auth", AUTH, False),
    ("denied: requested access to the resource is denied", None, "auth", AUTH, False),
    ("name unknown: repository name not known to registry", None, "missing_repository", REG, False),
    ("manifest invalid: manifest invalid", None, "invalid", REG, False),
    ("tag invalid: manifest tag did not match URI", None, "invalid", REG, False),
    ("name invalid: invalid repository name", None, "invalid", REG, False),
    ("blob unknown: blob unknown to registry", None, "invalid", REG, False),
    ("manifest blob unknown: blob unknown to registry", None, "invalid", REG, False),
    ("digest invalid: provided digest did not match uploaded content", None, "invalid", REG, False),
    ("unsupported: The operation is unsupported.", None, "invalid", REG, False),
    ("manifest unknown: manifest unknown", None, "not_found", REG, False),
    ("manifest unknown", None, "not_found", REG, False),
    ("toomanyrequests: too many requests", None, "throttled", REG, True),
    ("unavailable: service unavailable", None, "server", REG, True),
    ("blob upload unknown: blob upload unknown to registry", None, "upload_lost", REG, True),
    ("blob upload invalid: blob upload invalid", None, "upload_lost", REG, True),
    ("unknown: unknown error", None, "other", REG, False),
]

ECR: list[Row] = [
    (
        "denied: Your authorization token has expired. Reauthenticate and try again.",
        None,
        "auth",
        AUTH,
        False,
    ),
    (
        "name unknown: The repository with name 'x' does not exist in the registry with id '123'",
        None,
        "missing_repository",
        REG,
        False,
    ),
    (
        "tag invalid: The image tag '1.0' already exists in the 'x' repository and cannot be "
        "overwritten because the repository is immutable.",
        None,
        "immutable_tag",
        REG,
        False,
    ),
    ("no basic auth credentials", None, "auth", AUTH, False),
    (
        "denied: User: arn:aws:iam::123456789012:user/ci is not authorized to perform: "
        "ecr:InitiateLayerUpload on resource: arn:aws:ecr:us-east-1:123456789012:repository/x",
        None,
        "auth",
        AUTH,
        False,
    ),
    (
        "unknown: unexpected status from HEAD request to https://123456789012.dkr.ecr.us-east-1"
        ".amazonaws.com/v2/x/blobs/sha256:eace8faceeab34ae5f719d392809e7f1bcdd75fda012fe41f6acba04"
        "abac3cf0: 403 Forbidden",
        None,
        "auth",
        AUTH,
        False,
    ),
    (
        'error parsing HTTP 403 response body: unexpected end of JSON input: ""',
        None,
        "auth",
        AUTH,
        False,
    ),
    ("toomanyrequests: Rate exceeded", None, "throttled", REG, True),
]

DOCKER_HUB: list[Row] = [
    (
        "toomanyrequests: You have reached your pull rate limit. You may increase the limit by "
        "authenticating and upgrading: https://www.docker.com/increase-rate-limit",
        None,
        "throttled",
        REG,
        True,
    ),
    ("denied: requested access to the resource is denied", None, "auth", AUTH, False),
    ("unauthorized: incorrect username or password", None, "auth", AUTH, False),
    ("unauthorized: access token has insufficient scopes", None, "auth", AUTH, False),
    ("received unexpected HTTP status: 429 Too Many Requests", None, "throttled", REG, True),
]

ENGINE: list[Row] = [
    ("received unexpected HTTP status: 503 Service Unavailable", None, "server", REG, True),
    ("received unexpected HTTP status: 500 Internal Server Error", None, "server", REG, True),
    ("received unexpected HTTP status: 502 Bad Gateway", None, "server", REG, True),
    ("received unexpected HTTP status: 504 Gateway Time-out", None, "timeout", REG, True),
    (
        'Put "https://registry.example.com/v2/app/manifests/1.0": net/http: TLS handshake timeout',
        None,
        "timeout",
        REG,
        True,
    ),
    (
        'Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused',
        None,
        "unreachable",
        REG,
        True,
    ),
    ("dial tcp 127.0.0.1:5000: connect: connection refused", None, "unreachable", REG, True),
    # A port that looks like a status code is still a port.
    ("dial tcp 127.0.0.1:503: connect: connection refused", None, "unreachable", REG, True),
    (
        'Get "http://127.0.0.1:35815/v2/": read tcp 127.0.0.1:59254->127.0.0.1:35815: read: '
        "connection reset by peer",
        None,
        "unreachable",
        REG,
        True,
    ),
    ("read: connection reset by peer", None, "unreachable", REG, True),
    ("EOF", None, "unreachable", REG, True),
    (
        'Patch "http://127.0.0.1:5000/v2/app/blobs/uploads/x": unexpected EOF',
        None,
        "unreachable",
        REG,
        True,
    ),
    ("write tcp 127.0.0.1:1->127.0.0.1:2: write: broken pipe", None, "unreachable", REG, True),
    (
        "http2: server sent GOAWAY and closed the connection; LastStreamID=1999, "
        'ErrCode=NO_ERROR, debug=""',
        None,
        "unreachable",
        REG,
        True,
    ),
    (
        "dial tcp: lookup registry on 127.0.0.11:53: server misbehaving",
        None,
        "unreachable",
        REG,
        True,
    ),
    ("dial tcp 10.0.0.1:443: connect: no route to host", None, "unreachable", REG, True),
    ("dial tcp 10.0.0.1:443: i/o timeout", None, "timeout", REG, True),
    (
        'Get "https://r.example/v2/": net/http: request canceled while waiting for connection '
        "(Client.Timeout exceeded while awaiting headers)",
        None,
        "timeout",
        REG,
        True,
    ),
    ('Get "https://r.example/v2/": context deadline exceeded', None, "timeout", REG, True),
    (
        'Get "https://127.0.0.1:5000/v2/": http: server gave HTTP response to HTTPS client',
        None,
        "tls",
        REG,
        False,
    ),
    ("x509: certificate signed by unknown authority", None, "tls", REG, False),
    ("tls: first record does not look like a TLS handshake", None, "tls", REG, False),
    ("lookup foo: no such host", None, "dns", REG, False),
    ('Get "https://foo/v2/": dial tcp: lookup foo: no such host', None, "dns", REG, False),
    ("unauthorized: authentication required", None, "auth", AUTH, False),
    ("manifest unknown", None, "not_found", REG, False),
    # docker-py's login with a wrong password: the engine answers 500, the text says 401.
    (
        "login attempt to http://127.0.0.1:38871/v2/ failed with status: 401 Unauthorized",
        500,
        "auth",
        AUTH,
        False,
    ),
    # Seen through the fault proxy: garbage instead of a registry.
    (
        'Get "http://127.0.0.1:35941/v2/": net/http: HTTP/1.x transport connection broken: '
        'malformed HTTP status code "IS"',
        None,
        "garbage",
        REG,
        False,
    ),
    ("received unexpected HTTP status: 200 OK", None, "garbage", REG, False),
    (
        "error parsing HTTP 200 response body: invalid character '!' looking for beginning of "
        'object key string: "{\\"errors\\": [ !!! not json"',
        None,
        "garbage",
        REG,
        False,
    ),
    (
        "error parsing HTTP 502 response body: invalid character '<' looking for beginning of "
        'value: "<html>"',
        None,
        "server",
        REG,
        True,
    ),
    ("toomanyrequests: toomanyrequests: injected by faultproxy", None, "throttled", REG, True),
    ("invalid reference format", None, "invalid", REG, False),
]

# What shipit's own registry client (shipit/registry_api.py) builds: "STATUS CODE: message".
REGISTRY_API: list[Row] = [
    ("401 UNAUTHORIZED: authentication required", 401, "auth", AUTH, False),
    ("403 DENIED: requested access to the resource is denied", 403, "auth", AUTH, False),
    ("403 Forbidden", 403, "auth", AUTH, False),
    (
        "404 NAME_UNKNOWN: repository name not known to registry",
        404,
        "missing_repository",
        REG,
        False,
    ),
    ("404 MANIFEST_UNKNOWN: manifest unknown", 404, "not_found", REG, False),
    ("400 MANIFEST_INVALID: manifest invalid", 400, "invalid", REG, False),
    ("429 TOOMANYREQUESTS: toomanyrequests: injected by faultproxy", 429, "throttled", REG, True),
    ("503 UNAVAILABLE: service unavailable (injected 503)", 503, "server", REG, True),
    ("500 UNKNOWN: unknown error", 500, "server", REG, True),
    ("502 Bad Gateway", 502, "server", REG, True),
    ("504 Gateway Timeout", 504, "timeout", REG, True),
    ("cannot talk to r.example: connection refused", None, "unreachable", REG, True),
    ("cannot talk to r.example: connection reset", None, "unreachable", REG, True),
    (
        "cannot talk to r.example: connection closed without an answer",
        None,
        "unreachable",
        REG,
        True,
    ),
    ("cannot talk to r.example: connection timed out", None, "timeout", REG, True),
    ("cannot talk to r.example: malformed HTTP response", None, "garbage", REG, False),
    ("cannot talk to r.example: no such host", None, "dns", REG, False),
    # The status decides where the text says nothing.
    ("418 I'm a teapot", 418, "other", REG, False),
    ("599 something", 599, "server", REG, True),
    ("404 weird", 404, "not_found", REG, False),
]

ALL_ROWS = DISTRIBUTION + ECR + DOCKER_HUB + ENGINE + REGISTRY_API


@pytest.mark.parametrize(("text", "status", "kind", "code", "transient"), ALL_ROWS)
def test_error_text_is_classified(
    text: str, status: int | None, kind: str, code: int, transient: bool
) -> None:
    error = classify_registry_message(text, status=status, registry="r.example")
    assert error.exit_code == code
    if kind == "auth":
        assert isinstance(error, AuthError)
    else:
        assert isinstance(error, RegistryError)
        assert (error.kind, error.transient) == (kind, transient)
    # One line, naming the registry and keeping the registry's own words.
    assert "\n" not in error.message
    assert "(r.example)" in error.message
    assert " ".join(text.split()) in error.message


def test_every_class_is_covered_by_a_real_text() -> None:
    kinds = {row[2] for row in ALL_ROWS}
    assert {rule.kind for rule in RULES} <= kinds


def test_only_throttling_server_upload_timeout_and_connection_failures_are_retried() -> None:
    transient = {rule.kind for rule in RULES if rule.transient}
    assert transient == {"throttled", "server", "upload_lost", "timeout", "unreachable"}


def test_auth_and_throttling_statuses_win_over_the_text() -> None:
    auth = rule_for("503 whatever", 401)
    throttled = rule_for("manifest invalid", 429)
    assert auth is not None and auth.kind == "auth"
    assert throttled is not None and throttled.kind == "throttled"


def test_engine_500_does_not_hide_what_the_text_says() -> None:
    # The engine wraps most registry failures in its own 500: the text decides.
    error = classify_registry_message("manifest invalid: manifest invalid", status=500)
    assert isinstance(error, RegistryError)
    assert (error.kind, error.transient) == ("invalid", False)


def test_unknown_text_is_a_permanent_registry_error_with_the_text() -> None:
    error = classify_registry_message("the flux capacitor is\n  misaligned")
    assert isinstance(error, RegistryError)
    assert (error.kind, error.transient, error.exit_code) == ("other", False, REG)
    assert error.message == "registry error: the flux capacitor is misaligned"


def test_hints_say_what_to_do() -> None:
    auth = classify_registry_message("unauthorized: authentication required")
    assert auth.hint and "password" in auth.hint
    throttled = classify_registry_message("toomanyrequests: too many requests")
    assert throttled.hint and "wait" in throttled.hint


# ---------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("toomanyrequests: slow down; Retry-After: 30", 30.0),
        ("throttled, retry after 2.5s", 2.5),
        ("please retry-after=7", 7.0),
        ("toomanyrequests: too many requests", None),
        ("retry later", None),
    ],
)
def test_retry_after_in_a_text(text: str, seconds: float | None) -> None:
    assert parse_retry_after(text) == seconds


def test_retry_after_from_a_text_is_carried_by_the_error() -> None:
    error = classify_registry_message("429 Too Many Requests; Retry-After: 12")
    assert isinstance(error, RegistryError)
    assert (error.kind, error.retry_after) == ("throttled", 12.0)


NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: no wait
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after_header(header, now=lambda: NOW) == seconds
