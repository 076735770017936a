"""`shipit inspect`: an image's size, layers, user, ports and healthcheck; two images compared."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from shipit.adapters.engine.client import Engine
from shipit.model import ImageReport, Layer

_NOP = re.compile(r"^/bin/sh -c #\(nop\)\s*")


_SHELL = re.compile(r"^(?:\|\d+ .*?)?/bin/sh -c ")


def clean_instruction(created_by: str) -> str:
    """`docker history`'s CreatedBy as the Dockerfile instruction ('/bin/sh -c #(nop) ' dropped)."""
    text = (created_by or "").strip()
    text = text.removesuffix("# buildkit").strip()
    if not text:
        # Layers of an imported base image (`docker import`, some registries) carry no history.
        return "(no history: base image layer)"
    if _NOP.match(text):
        return _NOP.sub("", text)
    if _SHELL.match(text):
        # A RUN step; the legacy builder prefixes '|N KEY=VALUE...' when build args were set.
        return "RUN " + _SHELL.sub("", text, count=1)
    return text


def format_healthcheck(healthcheck: Mapping[str, Any] | None) -> str | None:
    """'CMD curl -f http://... (every 5s, timeout 3s, 3 retries)'; 'disabled'; None if unset."""
    test = list((healthcheck or {}).get("Test") or [])
    if not test:
        return None
    if test[0] == "NONE":
        return "disabled"
    kind, args = test[0], test[1:]
    # As a Dockerfile would say it: exec form for CMD, shell form for CMD-SHELL.
    command = f"CMD {json.dumps(args)}" if kind == "CMD" else f"CMD {args[0] if args else ''}"
    parts = []
    for key, word in (("Interval", "every"), ("Timeout", "timeout"), ("StartPeriod", "start")):
        nanos = (healthcheck or {}).get(key)
        if nanos:
            parts.append(f"{word} {nanos / 1e9:g}s")
    retries = (healthcheck or {}).get("Retries")
    if retries:
        parts.append(f"{retries} retries")
    suffix = f" ({', '.join(parts)})" if parts else ""
    return f"{command}{suffix}"


def inspect_image(engine: Engine, reference: str) -> ImageReport:
    """Size, layers (with the instruction behind each), user, ports, healthcheck and labels."""
    info = engine.require_image(reference)
    history = engine.history(info.id)
    layers = tuple(
        Layer(
            size=int(entry.get("Size") or 0),
            instruction=clean_instruction(entry.get("CreatedBy") or ""),
        )
        for entry in reversed(history)
    )
    return ImageReport(
        reference=reference,
        id=info.id,
        size=info.size,
        created=str(info.raw.get("Created") or ""),
        user=info.user,
        exposed_ports=info.exposed_ports,
        healthcheck=format_healthcheck(info.healthcheck),
        labels=dict(info.labels),
        layers=layers,
    )
