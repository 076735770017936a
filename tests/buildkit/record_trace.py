"""Record BuildKit status streams from the local engine as trace fixtures.

Run by hand (``.venv/bin/python -m tests.buildkit.record_trace [CASE...]``) against a running
engine that has shipit.local/busybox:latest; each case writes
``tests/buildkit/fixtures/trace/CASE.jsonl``: the engine's JSON chunks, one per line, as
received from ``POST /build?version=2``. The images it tags are removed afterwards.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "trace"
BASE = "shipit.local/busybox:latest"
PREFIX = "shipit-trace-fixture"


def context_tar(files: Mapping[str, str]) -> bytes:
    """A GNU-format tar of the given files (the engine reads a PAX tar as a Dockerfile)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(api: Any, files: Mapping[str, str], **params: Any) -> list[dict[str, Any]]:
    """POST /build?version=2 and return every decoded chunk of the response stream."""
    query: dict[str, Any] = {"version": "2", "rm": "1", **params}
    resp = api._post(
        api._url("/build"),
        params=query,
        data=context_tar(files),
        headers={"Content-Type": "application/x-tar"},
        stream=True,
        timeout=300,
    )
    api._raise_for_status(resp)
    return list(api._stream_helper(resp, decode=True))


def _tag() -> str:
    return f"{PREFIX}-{uuid.uuid4().hex[:8]}:latest"


SIMPLE = f"""FROM {BASE}
RUN echo building && sleep 0.2
COPY app.txt /app.txt
RUN cat /app.txt
"""

MULTISTAGE = f"""FROM {BASE} AS builder
RUN echo compiling && sleep 1 && echo compiled > /out.txt
FROM {BASE} AS assets
RUN echo assets && sleep 1 && echo assets > /assets.txt
FROM {BASE}
COPY --from=builder /out.txt /out.txt
COPY --from=assets /assets.txt /assets.txt
RUN cat /out.txt /assets.txt
"""

FAILING = f"""FROM {BASE}
RUN echo before the failure
RUN echo line one && echo line two >&2 && for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do echo "output $i"; done && exit 3
RUN echo never runs
"""

HOSTILE = f"""FROM {BASE}
RUN echo "[/dim] closing tag" && echo "[bold]x" && printf '\\033[91mred\\033[0m and [link=http://x]y[/link]\\n' && echo '{{"json": true}}'
"""

WARNINGS = f"""FROM {BASE}
ARG USED=1
RUN echo "used=$USED"
"""


def case_cached(api: Any) -> list[dict[str, Any]]:
    files = {"Dockerfile": SIMPLE, "app.txt": f"fixture {uuid.uuid4().hex}\n"}
    tag = _tag()
    build(api, files, t=tag)  # warm the cache; the recorded stream is the rebuild
    chunks = build(api, files, t=tag)
    api.remove_image(tag, force=True)
    return chunks


def case_fresh(api: Any) -> list[dict[str, Any]]:
    files = {"Dockerfile": SIMPLE, "app.txt": f"fixture {uuid.uuid4().hex}\n"}
    tag = _tag()
    chunks = build(api, files, t=tag, nocache="1")
    api.remove_image(tag, force=True)
    return chunks


def case_multistage(api: Any) -> list[dict[str, Any]]:
    tag = _tag()
    chunks = build(api, {"Dockerfile": MULTISTAGE}, t=tag, nocache="1")
    api.remove_image(tag, force=True)
    return chunks


def case_failing(api: Any) -> list[dict[str, Any]]:
    return build(api, {"Dockerfile": FAILING}, t=_tag(), nocache="1")


def case_hostile(api: Any) -> list[dict[str, Any]]:
    tag = _tag()
    chunks = build(api, {"Dockerfile": HOSTILE}, t=tag, nocache="1")
    api.remove_image(tag, force=True)
    return chunks


def case_warnings(api: Any) -> list[dict[str, Any]]:
    tag = _tag()
    args = json.dumps({"USED": "2", "PYTHON_IMAG": "typo"})
    chunks = build(api, {"Dockerfile": WARNINGS}, t=tag, buildargs=args, nocache="1")
    api.remove_image(tag, force=True)
    return chunks


def case_syntax_error(api: Any) -> list[dict[str, Any]]:
    return build(api, {"Dockerfile": f"FROM {BASE}\nNOSUCH thing\n"}, t=_tag())


PARTIAL = f"""FROM {BASE}
RUN printf 'no line end'; for i in 1 2 3; do printf '\\r%s%%' "$i"; sleep 0.3; done; printf '\\rdone\\n'
"""

CACHE_MOUNT = f"""FROM {BASE}
RUN --mount=type=cache,target=/cache echo run >> /cache/runs && wc -l < /cache/runs
"""


def case_partial(api: Any) -> list[dict[str, Any]]:
    tag = _tag()
    chunks = build(api, {"Dockerfile": PARTIAL}, t=tag, nocache="1")
    api.remove_image(tag, force=True)
    return chunks


def case_cache_mount(api: Any) -> list[dict[str, Any]]:
    tag = _tag()
    chunks = build(api, {"Dockerfile": CACHE_MOUNT}, t=tag, nocache="1")
    api.remove_image(tag, force=True)
    return chunks


def case_missing_base(api: Any) -> list[dict[str, Any]]:
    dockerfile = "FROM shipit.local/no-such-image-for-fixtures:latest\nRUN true\n"
    return build(api, {"Dockerfile": dockerfile}, t=_tag())


def case_secret_without_session(api: Any) -> list[dict[str, Any]]:
    dockerfile = f"FROM {BASE}\nRUN --mount=type=secret,id=token cat /run/secrets/token\n"
    return build(api, {"Dockerfile": dockerfile}, t=_tag(), nocache="1")


def case_cache_from_unavailable(api: Any) -> list[dict[str, Any]]:
    # Port 9 on loopback: nothing listens, so the cache import fails at once.
    tag = _tag()
    files = {"Dockerfile": SIMPLE, "app.txt": "cache-from fixture\n"}
    chunks = build(api, files, t=tag, cachefrom=json.dumps(["127.0.0.1:9/shipit/none:latest"]))
    api.remove_image(tag, force=True)
    return chunks


CASES = {
    "cache_from_unavailable": case_cache_from_unavailable,
    "missing_base": case_missing_base,
    "secret_without_session": case_secret_without_session,
    "partial": case_partial,
    "cache_mount": case_cache_mount,
    "cached": case_cached,
    "fresh": case_fresh,
    "multistage": case_multistage,
    "failing": case_failing,
    "hostile": case_hostile,
    "warnings": case_warnings,
    "syntax_error": case_syntax_error,
}


def main(argv: list[str]) -> int:
    import docker

    api = docker.APIClient(version="auto")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in argv or list(CASES):
        started = time.monotonic()
        chunks = CASES[name](api)
        path = FIXTURES / f"{name}.jsonl"
        path.write_text("".join(json.dumps(c, sort_keys=True) + "\n" for c in chunks))
        print(f"{name}: {len(chunks)} chunks in {time.monotonic() - started:.2f} s -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
