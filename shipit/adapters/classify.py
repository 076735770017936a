"""Classification of the error texts the engine and registries produce, with the retry decision.

Authentication problems exit 3; everything else a registry does wrong exits 6. Only transient
classes (throttling, 5xx, lost uploads, connection resets/refusals, timeouts) are worth retrying.

The texts come from three places: the engine's push stream and API errors (distribution's
``errcode`` strings such as ``name unknown: repository name not known to registry``, Go's
``net/http`` errors such as ``read: connection reset by peer``), the OCI error bodies our own
registry client reads (``NAME_UNKNOWN: ...``, with the HTTP status), and ECR's and Docker Hub's
own wording (``denied: Your authorization token has expired...``, ``toomanyrequests: ...``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from shipit.errors import AuthError, RegistryError, ShipitError


@dataclass(frozen=True)
class Rule:
    """One class of registry failure: what it is called, how it is recognised, whether to retry."""

    kind: str
    pattern: re.Pattern[str]
    transient: bool
    what: str
    hint: str | None = None


def _rule(kind: str, pattern: str, transient: bool, what: str, hint: str | None = None) -> Rule:
    return Rule(kind, re.compile(pattern, re.IGNORECASE), transient, what, hint)


# An HTTP status number on its own, not part of a port ("127.0.0.1:5000"), an address or a digest.
def _status(codes: str) -> str:
    return rf"(?<![\w.:/-])(?:{codes})(?![\w-]|\.\d)"


# Order matters: the first matching rule wins. Texts are matched with "_" read as " ", so the
# OCI codes our registry client sees ("NAME_UNKNOWN") read like the engine's ("name unknown").
RULES: tuple[Rule, ...] = (
    _rule(
        "auth",
        r"unauthorized|authentication required|no basic auth credentials|incorrect username or "
        r"password|invalid username/password|\bdenied:|access to the resource is denied|"
        r"not authorized|authorization token has expired|\bforbidden\b|" + _status("403"),
        False,
        "the registry refused the credentials",
        "check the username and token/password (for ECR, the IAM permissions), then retry",
    ),
    _rule(
        "throttled",
        r"toomanyrequests|too many requests|rate limit|rate exceeded|throttl|" + _status("429"),
        True,
        "the registry is rate limiting requests",
        "wait and retry; Docker Hub limits anonymous and free accounts (log in to raise the limit)",
    ),
    _rule(
        "immutable_tag",
        r"tag invalid.*(already exists|immutable)|cannot be overwritten because the repository is "
        r"immutable|ImageTagAlreadyExistsException",
        False,
        "the tag already exists in an immutable repository",
        "push a new version tag; the registry kept the existing image",
    ),
    _rule(
        "missing_repository",
        r"name unknown|repository .* (does not exist|not found)|repositorynotfound|"
        r"repository name not known",
        False,
        "the repository does not exist in the registry",
        "create it (shipit creates ECR repositories unless --no-create-repo) or fix the name",
    ),
    _rule(
        "upload_lost",
        r"blob upload unknown|blob upload invalid",
        True,
        "the registry lost the upload in progress",
    ),
    _rule(
        "not_found",
        r"manifest unknown|no such manifest|\bnot found\b",
        False,
        "the registry does not have that reference",
    ),
    _rule(
        "invalid",
        r"manifest invalid|name invalid|invalid reference format|tag invalid|digest invalid|"
        r"size invalid|range invalid|manifest unverified|\bunsupported:|operation is unsupported|"
        r"unsupported (?:manifest|media type)|manifest blob unknown|"
        r"blob unknown",
        False,
        "the registry rejected the image or its name",
    ),
    _rule(
        "timeout",
        r"i/o timeout|timeout exceeded|deadline exceeded|timed out|tls handshake timeout|"
        r"gateway time-?out|" + _status("408|504"),
        True,
        "the registry did not answer in time",
    ),
    _rule(
        "server",
        r"internal server error|bad gateway|service unavailable|\bunavailable\b|"
        r"unexpected http status: 5\d\d|" + _status(r"5\d\d"),
        True,
        "the registry had a server error",
    ),
    _rule(
        "garbage",
        r"malformed http|transport connection broken|badstatusline|invalid character .* looking|"
        r"unexpected http status: [1-4]\d\d|cannot unmarshal|unexpected end of json",
        False,
        "the registry answered with something that is not a registry response",
        "check that the address points at a container registry (not a web page or proxy)",
    ),
    _rule(
        "unreachable",
        r"connection refused|connection reset|broken pipe|\beof\b|no route to host|"
        r"server misbehaving|network is unreachable|use of closed network connection|"
        r"connection closed|connection aborted|remote end closed|goaway",
        True,
        "the registry could not be reached",
        "check the registry address and that it is running",
    ),
    _rule(
        "dns",
        r"no such host|name or service not known|temporary failure in name resolution",
        False,
        "the registry host name does not resolve",
        "check the registry address and DNS",
    ),
    _rule(
        "tls",
        r"server gave http response to https client|x509|certificate|"
        r"first record does not look like a tls handshake",
        False,
        "the registry's TLS setup does not match",
        "check the registry address (http vs https) and its certificate",
    ),
)

_BY_KIND = {rule.kind: rule for rule in RULES}
# Statuses that name the class whatever the text says (they only ever come from a registry).
_DEFINITE_STATUS = {401: "auth", 429: "throttled"}


def rule_for(message: str, status: int | None = None) -> Rule | None:
    """The rule that classifies an error text (and HTTP status, when known); None if unknown.

    The status decides for 401 and 429; otherwise the text does, and the status is only the
    fallback (the engine answers its own 500 for most registry failures, so a 500 from the
    engine says little: its text does).
    """
    if status in _DEFINITE_STATUS:
        return _BY_KIND[_DEFINITE_STATUS[status]]
    searchable = " ".join(message.replace("_", " ").split())
    for rule in RULES:
        if rule.pattern.search(searchable):
            return rule
    if status is None:
        return None
    if status == 403:
        return _BY_KIND["auth"]
    if status in (408, 504):
        return _BY_KIND["timeout"]
    if 500 <= status < 600:
        return _BY_KIND["server"]
    if status == 404:
        return _BY_KIND["not_found"]
    return None


def classify_registry_message(
    message: str, *, status: int | None = None, registry: str | None = None
) -> ShipitError:
    """Turn an engine or registry error text (and HTTP status, when known) into a shipit error."""
    text = " ".join(message.split())
    where = f" ({registry})" if registry else ""
    rule = rule_for(text, status)
    if rule is None:
        return RegistryError(f"registry error{where}: {text}", kind="other")
    if rule.kind == "auth":
        return AuthError(f"{rule.what}{where}: {text}", hint=rule.hint)
    return RegistryError(
        f"{rule.what}{where}: {text}",
        hint=rule.hint,
        transient=rule.transient,
        retry_after=parse_retry_after(text),
        kind=rule.kind,
    )


def parse_retry_after(text: str) -> float | None:
    """A Retry-After value carried in an error text ('retry after 30s', 'Retry-After: 30')."""
    match = re.search(r"retry[- ]after[:= ]+(\d+(?:\.\d+)?)\s*s?", text, re.IGNORECASE)
    return float(match.group(1)) if match else None


def parse_retry_after_header(
    value: str | None, *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait from an HTTP Retry-After header: delta-seconds or an HTTP-date.

    None when the header is missing or unreadable; a date in the past means 0.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now())
