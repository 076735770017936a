"""Classification of the error texts the engine and registries produce, with the retry decision.

Authentication problems exit 3; everything else a registry does wrong exits 6. Only transient
classes (throttling, 5xx, connection resets/refusals, timeouts) are worth retrying.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipit.errors import AuthError, RegistryError, ShipitError


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    transient: bool
    what: str
    hint: str | None = None


def _rule(kind: str, pattern: str, transient: bool, what: str, hint: str | None = None) -> _Rule:
    return _Rule(kind, re.compile(pattern, re.IGNORECASE), transient, what, hint)


# Order matters: the first matching rule wins.
RULES: tuple[_Rule, ...] = (
    _rule(
        "auth",
        r"unauthorized|authentication required|no basic auth credentials|incorrect username or "
        r"password|invalid username/password|401 unauthorized|access to the resource is denied|"
        r"denied: (?:requested access|not authorized)|authorization token has expired|"
        r"your authorization token has expired",
        False,
        "the registry refused the credentials",
        "check the username and token/password (for ECR, the IAM permissions), then retry",
    ),
    _rule(
        "throttled",
        r"toomanyrequests|too many requests|\b429\b|rate limit",
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
        "not_found",
        r"manifest unknown|no such manifest|\bnot found\b",
        False,
        "the registry does not have that reference",
    ),
    _rule(
        "invalid",
        r"manifest invalid|name invalid|invalid reference format|tag invalid|"
        r"unsupported manifest|manifest blob unknown|blob unknown",
        False,
        "the registry rejected the image or its name",
    ),
    _rule(
        "timeout",
        r"i/o timeout|timeout exceeded|deadline exceeded|timed out|tls handshake timeout|"
        r"\b504\b|gateway time-?out",
        True,
        "the registry did not answer in time",
    ),
    _rule(
        "server",
        r"\b50[0-3]\b|internal server error|bad gateway|service unavailable|unavailable|"
        r"unexpected http status: 5",
        True,
        "the registry had a server error",
    ),
    _rule(
        "unreachable",
        r"connection refused|connection reset|broken pipe|\beof\b|no route to host|"
        r"server misbehaving|network is unreachable|use of closed network connection|"
        r"connection closed",
        True,
        "the registry could not be reached",
        "check the registry address and that it is running",
    ),
    _rule(
        "unreachable_permanent",
        r"no such host|name or service not known|server gave http response to https client|"
        r"x509|certificate",
        False,
        "the registry could not be reached",
        "check the registry address, DNS and TLS settings",
    ),
)


def classify_registry_message(
    message: str, *, status: int | None = None, registry: str | None = None
) -> ShipitError:
    """Turn an engine or registry error text (and HTTP status, when known) into a shipit error."""
    text = " ".join(message.split())
    where = f" ({registry})" if registry else ""
    rule: _Rule | None
    if status == 401:
        rule = RULES[0]
    elif status == 429:
        rule = RULES[1]
    else:
        rule = next((r for r in RULES if r.pattern.search(text)), None)
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
