"""The engine client's old home, kept only while code written before the move imports it.

New code imports `shipit.adapters.engine.client` (Engine, stream readers) and `shipit.model`
(events, Auth, image and container records).
"""

from shipit.adapters.engine.client import (
    DEFAULT_SOCKET,
    Engine,
    read_build_stream,
    read_push_stream,
)

__all__ = ["DEFAULT_SOCKET", "Engine", "read_build_stream", "read_push_stream"]
