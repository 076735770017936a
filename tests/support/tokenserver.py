"""A small Docker registry token server (the ``auth.docker.io`` role), on loopback only.

It implements what distribution's token authentication expects (docs/spec/auth/token.md and
registry/auth/token/token.go of distribution 2.8): clients answer the registry's
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` challenge with

- ``GET /token?service=S&scope=repository:NS/REPO:pull,push&account=U`` and Basic auth, or
- ``POST /token`` (OAuth2 form: ``grant_type=password`` with ``username``/``password``, or
  ``grant_type=refresh_token`` with a refresh token this server issued),

and get a JWT signed with ES256. Its header names the signing key by ``kid``, the libtrust
fingerprint distribution computes for each certificate of its ``rootcertbundle``
(:attr:`TokenServer.cert_pem` is that bundle). The ``access`` claim grants only what the user
may do: push and pull in the namespaces of :class:`Account`, nothing elsewhere; anonymous
requests get a token without access. Wrong credentials get 401, like Docker Hub.

:meth:`TokenServer.rate_limit` makes matching token requests answer Docker Hub's rate-limit
response (429 ``TOOMANYREQUESTS`` with ``ratelimit-limit``/``ratelimit-remaining``).
Every request is recorded in :attr:`TokenServer.requests` (never a password).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

TOKEN_LIFETIME = 300  # seconds, as Docker Hub's tokens
#: Docker Hub's own rate-limit message (its 429 on registry-1.docker.io and auth.docker.io).
RATE_LIMIT_MESSAGE = (
    "You have reached your pull rate limit. You may increase the limit by authenticating and "
    "upgrading: https://www.docker.com/increase-rate-limit"
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The ``kid`` distribution accepts: libtrust's fingerprint of the key (base32 of the first
    240 bits of SHA-256 of the DER public key, in 12 groups of 4 joined by ``:``)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@dataclass(frozen=True)
class SigningKey:
    """An ES256 key and the self-signed certificate the registry trusts it through."""

    private_key: ec.EllipticCurvePrivateKey
    cert_pem: bytes

    @classmethod
    def generate(cls, issuer: str) -> SigningKey:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{issuer} token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert.public_bytes(serialization.Encoding.PEM))

    @property
    def kid(self) -> str:
        return libtrust_key_id(self.private_key.public_key())

    def sign_jwt(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "ES256", "kid": self.kid}
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)  # JOSE wants the raw 32-byte r and s
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@dataclass(frozen=True)
class Account:
    """A user (``DOCKERHUB_USERNAME``) with an access token, allowed to push in ``namespaces``
    (its own name plus any organisations) unless the token is read-only."""

    username: str
    token: str = field(repr=False)
    namespaces: tuple[str, ...] = ()
    #: A read-only access token (Docker Hub's "Read-only" permission): pull, never push.
    read_only: bool = False

    def may_access(self, repository: str) -> bool:
        namespace = repository.split("/", 1)[0]
        return "/" in repository and namespace in {self.username, *self.namespaces}


@dataclass
class TokenRequest:
    """One request the token server answered (for assertions; no secret)."""

    method: str
    path: str
    account: str | None  # the authenticated user, None for anonymous or refused
    scopes: list[str]
    granted: list[dict[str, Any]]
    status: int
    grant_type: str = ""
    user_agent: str = ""


@dataclass
class _RateLimit:
    scope_pattern: re.Pattern[str]
    times: int  # -1: until cleared
    limit: int
    fired: int = 0


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``repository:ns/repo:pull,push`` -> ("repository", "ns/repo", ["pull", "push"])."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and kind and name):
        return None
    return kind, name, [a for a in actions.split(",") if a]


class TokenServer:
    """The server's state; the HTTP handler below reads it. Use :func:`running_token_server`."""

    def __init__(self, *, issuer: str, service: str, accounts: list[Account]):
        self.issuer = issuer
        self.service = service
        self.accounts = {a.username: a for a in accounts}
        self.signing_key = SigningKey.generate(issuer)
        self.requests: list[TokenRequest] = []
        self._refresh_tokens: dict[str, str] = {}  # token -> username
        self._rate_limits: list[_RateLimit] = []
        self._lock = threading.Lock()
        self.address = ""  # HOST:PORT once listening

    @property
    def cert_pem(self) -> bytes:
        """The registry's ``rootcertbundle``."""
        return self.signing_key.cert_pem

    def rate_limit(self, scope: str = r".*", *, times: int = -1, limit: int = 100) -> None:
        """Answer token requests whose scopes match ``scope`` (regex) with Docker Hub's 429
        (``ratelimit-remaining: 0``) for the next ``times`` of them (-1: until cleared)."""
        with self._lock:
            self._rate_limits.append(_RateLimit(re.compile(scope), times, limit))

    def clear_rate_limits(self) -> None:
        with self._lock:
            self._rate_limits.clear()

    def rate_limited_requests(self) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.status == 429)

    def granted_scopes(self, account: str) -> list[str]:
        """Every ``repository:NAME:ACTIONS`` granted to ``account``, in order."""
        with self._lock:
            return [
                f"{g['type']}:{g['name']}:{','.join(g['actions'])}"
                for r in self.requests
                if r.account == account
                for g in r.granted
            ]

    # -- decisions (called by the handler) -------------------------------------------------

    def check_password(self, username: str, password: str) -> Account | None:
        account = self.accounts.get(username)
        if account is None or not hmac.compare_digest(account.token, password):
            return None
        return account

    def check_refresh_token(self, token: str) -> Account | None:
        with self._lock:
            username = self._refresh_tokens.get(token)
        return self.accounts.get(username) if username else None

    def new_refresh_token(self, account: Account) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh_tokens[token] = account.username
        return token

    def throttled(self, scopes: list[str]) -> _RateLimit | None:
        with self._lock:
            for rule in self._rate_limits:
                if rule.times >= 0 and rule.fired >= rule.times:
                    continue
                if any(rule.scope_pattern.search(s) for s in scopes) or (
                    not scopes and rule.scope_pattern.search("")
                ):
                    rule.fired += 1
                    return rule
        return None

    def grant(self, account: Account | None, scopes: list[str]) -> list[dict[str, Any]]:
        """The ``access`` claim: requested repository actions the account may have."""
        granted: list[dict[str, Any]] = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None or account is None:
                continue
            kind, name, actions = parsed
            allowed = [a for a in actions if a in ("pull", "push", "delete", "*")]
            if account.read_only:
                allowed = [a for a in allowed if a == "pull"]
            if kind == "repository" and allowed and account.may_access(name):
                granted.append({"type": kind, "name": name, "actions": allowed})
        return granted

    def issue(self, account: Account | None, granted: list[dict[str, Any]]) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": account.username if account else "",
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": granted,
        }
        return self.signing_key.sign_jwt(claims)

    def record(self, entry: TokenRequest) -> None:
        with self._lock:
            self.requests.append(entry)


class _Handler(BaseHTTPRequestHandler):
    server_version = "shipit-test-token-server"
    protocol_version = "HTTP/1.1"
    state: TokenServer  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        return None  # requests are recorded in TokenServer.requests instead

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        account, refused = self._basic_auth()
        self._answer("GET", url.path, scopes, account, refused, grant_type="")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        scopes = [s for value in form.get("scope", []) for s in value.split(" ") if s]
        grant_type = (form.get("grant_type") or [""])[0]
        account: Account | None = None
        if grant_type == "password":
            user, password = (form.get("username") or [""])[0], (form.get("password") or [""])[0]
            account = self.state.check_password(user, password)
        elif grant_type == "refresh_token":
            account = self.state.check_refresh_token((form.get("refresh_token") or [""])[0])
        refused = account is None
        path = urllib.parse.urlsplit(self.path).path
        self._answer("POST", path, scopes, account, refused, grant_type=grant_type)

    def _basic_auth(self) -> tuple[Account | None, bool]:
        header = self.headers.get("Authorization") or ""
        if not header.lower().startswith("basic "):
            return None, False  # anonymous
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, True
        account = self.state.check_password(user, password)
        return account, account is None

    def _answer(
        self,
        method: str,
        path: str,
        scopes: list[str],
        account: Account | None,
        refused: bool,
        *,
        grant_type: str,
    ) -> None:
        state = self.state
        entry = TokenRequest(
            method, path, None, scopes, [], 200, grant_type, self.headers.get("User-Agent") or ""
        )
        if path != "/token":
            entry.status = 404
            self._send(404, {"details": "not found"})
        elif (rule := state.throttled(scopes)) is not None:
            entry.status = 429
            headers = {
                "ratelimit-limit": f"{rule.limit};w=21600",
                "ratelimit-remaining": "0;w=21600",
                "docker-ratelimit-source": "127.0.0.1",
            }
            error = {"code": "TOOMANYREQUESTS", "message": RATE_LIMIT_MESSAGE, "detail": None}
            self._send(429, {"errors": [error]}, headers)
        elif refused:
            entry.status = 401
            self._send(401, {"details": "incorrect username or password"})
        else:
            entry.account = account.username if account else None
            entry.granted = state.grant(account, scopes)
            self._send(200, self._token_body(account, entry.granted, method))
        state.record(entry)

    def _token_body(
        self, account: Account | None, granted: list[dict[str, Any]], method: str
    ) -> dict[str, Any]:
        token = self.state.issue(account, granted)
        issued = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        body: dict[str, Any] = {"expires_in": TOKEN_LIFETIME, "issued_at": issued}
        if method == "POST":  # OAuth2 form: access_token, and a refresh token for the user
            body["access_token"] = token
            if account is not None:
                body["refresh_token"] = self.state.new_refresh_token(account)
        else:
            body["token"] = body["access_token"] = token
        return body

    def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if code == 401:
            self.send_header("Www-Authenticate", 'Basic realm="token server"')
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def running_token_server(
    *,
    host: str,
    port: int,
    accounts: list[Account],
    issuer: str = "auth.docker.io",
    service: str = "registry.docker.io",
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> Iterator[TokenServer]:
    """Serve ``/token`` on ``host:port`` (HTTPS when ``tls_cert``/``tls_key`` are given) in a
    thread; stopped when the block exits."""
    if not host.startswith("127."):
        raise ValueError("the token server listens on loopback only")
    state = TokenServer(issuer=issuer, service=service, accounts=accounts)
    handler = type("TokenHandler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    if tls_cert is not None and tls_key is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls_cert), str(tls_key))
        # The handshake happens on first read, in the connection's own thread: a client that
        # connects and stalls cannot block the accept loop.
        httpd.socket = context.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
    state.address = f"{host}:{httpd.server_address[1]}"
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
