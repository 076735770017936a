"""botocore exceptions to shipit errors: one line, the right exit code, never a secret."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from shipit.adapters.ecr.policy import IAM_PUSH_ACTIONS
from shipit.errors import AuthError, RegistryError, ShipitError, UsageError

_ACCESS_DENIED = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})


_BAD_CREDENTIALS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "AuthFailure",
    }
)


_THROTTLED = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    }
)


_SERVER = frozenset(
    {
        "ServerException",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "InternalServerError",
    }
)


_NO_CREDENTIALS_MSG = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
    "or run in an environment with an IAM role"
)


# Long base64-ish runs (an AWS secret key is 40 such characters, tokens are longer); pure hex
# runs (image digests) are left alone.
_SECRETISH = re.compile(r"[A-Za-z0-9/+=]{40,}")


_HEX = re.compile(r"[0-9a-f]+")


def _one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace, redact anything that looks like a key or token, and cap the length."""
    flat = " ".join(str(text).split())
    flat = _SECRETISH.sub(lambda m: m[0] if _HEX.fullmatch(m[0]) else "[redacted]", flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return _one_line(str(response.get("Error", {}).get("Message", "")))
    return ""


def _http_status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return int(status) if isinstance(status, int) else 0
    return 0


def _translate(exc: BaseException, action: str) -> ShipitError:
    """Map a botocore exception raised while doing ``action`` (e.g. "ecr:CreateRepository").

    Returns the error to raise; callers write ``raise _translate(exc, action) from exc``.
    """
    from botocore import exceptions as bce

    if isinstance(exc, ShipitError):
        return exc
    if isinstance(exc, bce.ClientError):
        return _client_error(exc, action)
    found = _setup_error(exc, action, bce) or _network_error(exc, action, bce)
    if found is not None:
        return found
    if isinstance(exc, bce.BotoCoreError):
        return RegistryError(f"{action} failed: {_one_line(str(exc))}")
    return RegistryError(f"{action} failed: {type(exc).__name__}: {_one_line(str(exc))}")


def _setup_error(exc: BaseException, action: str, bce: Any) -> ShipitError | None:
    """Region, profile and credential problems: the machine's AWS setup, not the request."""
    if isinstance(exc, bce.NoRegionError):
        return UsageError("no AWS region: pass --region or set AWS_REGION")
    if isinstance(exc, bce.ProfileNotFound):
        return UsageError(
            f"AWS profile not found: {_one_line(str(exc))}",
            hint="check --profile / AWS_PROFILE against ~/.aws/config",
        )
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return AuthError(_NO_CREDENTIALS_MSG)
    if isinstance(exc, bce.SSOError | bce.TokenRetrievalError):
        return AuthError(
            f"AWS SSO credentials are missing or expired during {action}: "
            "run `aws sso login` for this profile and retry"
        )
    if isinstance(exc, bce.CredentialRetrievalError):
        return AuthError(
            f"could not load AWS credentials for {action}: {_one_line(str(exc))}; "
            "check the profile's credential_process, role or SSO settings"
        )
    if isinstance(exc, bce.ParamValidationError):
        return UsageError(f"invalid request for {action}: {_one_line(str(exc))}")
    return None


def _network_error(exc: BaseException, action: str, bce: Any) -> ShipitError | None:
    """TLS, timeouts and connections: transient unless TLS verification failed."""
    if isinstance(exc, bce.SSLError):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
        return RegistryError(
            f"TLS verification failed talking to {endpoint} for {action}; "
            "check the proxy / CA bundle (AWS_CA_BUNDLE)",
            kind="tls",
        )
    if isinstance(exc, bce.ConnectTimeoutError | bce.ReadTimeoutError):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
        return RegistryError(
            f"timed out talking to {endpoint} for {action}; check the network and retry",
            transient=True,
            kind="timeout",
        )
    if isinstance(exc, bce.EndpointConnectionError | bce.ConnectionClosedError):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
        return RegistryError(
            f"could not reach {endpoint} for {action}; check the network, proxy and region",
            transient=True,
            kind="unreachable",
        )
    if isinstance(exc, bce.ConnectionError | bce.HTTPClientError):
        return RegistryError(
            f"network error during {action}: {_one_line(str(exc))}; check the network and retry",
            transient=True,
            kind="unreachable",
        )
    return None


def _client_error(exc: BaseException, action: str) -> ShipitError:
    """An error AWS answered with: access, credentials, clock, throttling, server, parameters."""
    code = _error_code(exc)
    message = _error_message(exc)
    status = _http_status(exc)
    if code in _ACCESS_DENIED:
        return AuthError(
            f"AWS denied {action} to this identity ({code}); grant {action} in IAM",
            hint="a push needs these IAM permissions: " + ", ".join(IAM_PUSH_ACTIONS),
            details=[message] if message else None,
        )
    if code in _BAD_CREDENTIALS:
        return AuthError(
            f"AWS credentials expired or invalid ({code}) during {action}: "
            "refresh them (new session token, `aws sso login`, or fix the access key) "
            "and retry",
        )
    if code in ("RequestExpired", "RequestTimeTooSkewed"):
        return AuthError(
            f"AWS rejected the request signature time ({code}) during {action}: "
            "sync the system clock and retry",
        )
    if code in _THROTTLED or status == 429:
        return RegistryError(
            f"AWS throttled {action} ({code or 'HTTP 429'}); wait a moment and retry",
            transient=True,
            kind="throttled",
        )
    if code in _SERVER or status >= 500:
        return RegistryError(
            f"AWS server error during {action} ({code or f'HTTP {status}'}); retry shortly",
            transient=True,
            kind="server",
        )
    if code == "InvalidParameterException":
        return UsageError(f"AWS rejected a parameter of {action}: {message or code}")
    if code == "RepositoryNotFoundException":
        return RegistryError(
            f"{action} failed: {message or 'the ECR repository does not exist'}; "
            "create the repository first",
            kind="not_found",
        )
    return RegistryError(
        f"{action} failed: {code or 'error'}: {message or 'no message from AWS'}",
    )


@contextlib.contextmanager
def _aws(action: str) -> Iterator[None]:
    """Translate every botocore error raised inside the block (see :func:`_translate`)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise _translate(exc, action) from exc
