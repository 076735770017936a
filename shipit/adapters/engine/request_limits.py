"""What fits in one request to the engine: build args and labels travel in the request URL.

`POST /build` carries ``buildargs`` and ``labels`` as JSON in its query string, for the legacy
builder and BuildKit alike. The engine (Go's net/http server) reads at most 1 MiB of request
line and headers and answers ``431 Request Header Fields Too Large`` beyond that (a proxy in
front of it may answer ``414 URI Too Long`` sooner). `check_build_query` refuses such a build
before anything is sent; `url_too_long` turns the engine's own refusal into the same error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import urlencode

from shipit.errors import UsageError

# Go's http.DefaultMaxHeaderBytes is 1 MiB for the request line and every header together;
# this leaves room for the other query parameters and the headers.
MAX_QUERY_BYTES = 1_000_000
URL_STATUSES = (414, 431)

_HINT = (
    "pass a large or secret value with --secret id=NAME,src=FILE (read it in a "
    "RUN --mount=type=secret step), or put it in a file in the build context and COPY it"
)


def _size(value: str) -> str:
    return f"{value} bytes" if len(value) < 1000 else f"{len(value) / 1_000_000:.1f} MB"


def encoded_query_bytes(buildargs: Mapping[str, str | None], labels: Mapping[str, str] = {}) -> int:
    """How many bytes the build args and labels take in the request URL, once encoded."""
    params = {"buildargs": json.dumps(dict(buildargs)), "labels": json.dumps(dict(labels))}
    return len(urlencode(params))


def check_build_query(
    buildargs: Mapping[str, str | None],
    labels: Mapping[str, str] = {},
    *,
    limit: int = MAX_QUERY_BYTES,
) -> None:
    """Refuse (exit 2) build args and labels too large for the request URL the engine reads."""
    size = encoded_query_bytes(buildargs, labels)
    if size <= limit:
        return
    values = {**{k: v or "" for k, v in buildargs.items()}, **labels}
    largest = max(values, key=lambda key: len(values[key])) if values else ""
    kind = "build arg" if largest in buildargs else "label"
    raise UsageError(
        f"build args and labels travel in the request URL, which the engine limits to about "
        f"{limit // 1_000_000 or 1} MB: these take {size / 1_000_000:.1f} MB encoded "
        f"(the largest, {kind} {largest}, is {_size(values.get(largest, ''))})",
        hint=_HINT,
    )


def url_too_long(status: int | None) -> UsageError | None:
    """The error for the engine's (or a proxy's) refusal of a too long request URL, else None."""
    if status not in URL_STATUSES:
        return None
    reason = "431 Request Header Fields Too Large" if status == 431 else "414 URI Too Long"
    return UsageError(
        f"the engine refused the build request ({reason}): build args and labels travel in the "
        "request URL, and these are too large for it",
        hint=_HINT,
    )
