"""Untrusted text made safe to print: the one helper for terminal escapes and control characters."""

from __future__ import annotations

import re

# Terminal escapes (CSI, OSC, other ESC sequences) and control characters other than tab/newline.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|\x1b"
    r"|[\x00-\x08\x0b-\x1f\x7f]"
)


def plain_text(text: str) -> str:
    """Untrusted text (engine, registry, container or file-name text) made safe to print.

    Terminal escapes and control characters are removed (tabs and newlines are kept), so a
    plain log carries no `^[[91m` and a live view cannot be moved or recoloured by what it shows.
    """
    return _ESCAPES.sub("", text)
