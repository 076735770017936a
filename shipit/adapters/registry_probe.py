"""Is a registry there? One GET of /v2/ (the registry API's base), for `shipit doctor`."""

from __future__ import annotations


def probe_registry(host: str, timeout: float = 5.0) -> str | None:
    """None when HOST answers the registry API's /v2/ (200 or 401), else what went wrong."""
    import http.client
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    schemes = ("http", "https") if host.split(":")[0] in ("localhost", "127.0.0.1") else ("https",)
    reason = "no answer"
    for scheme in schemes:
        try:
            with opener.open(f"{scheme}://{host}/v2/", timeout=timeout):
                return None
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return None
            reason = f"/v2/ answered HTTP {exc.code}: not a registry API"
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = f"unreachable ({getattr(exc, 'reason', exc)})"
    return reason
