"""File sync against exchanges recorded on the engine (``record_filesync.py``): shipit's own
build, and the docker CLI's (fsutil's Go sender) on the same tree. Replaying the engine's side
must give back the same packets, and the STATs and file contents must equal the CLI's."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipit.adapters.engine.buildkit.filesync import (
    FSUTIL_CHUNK_SIZE,
    SyncRequest,
    sync_context,
)
from shipit.adapters.engine.buildkit.fsutil_types import (
    PACKET_DATA,
    PACKET_FIN,
    PACKET_REQ,
    PACKET_STAT,
    Packet,
    Stat,
)
from tests.buildkit.filesync_support import make_fixture_tree, run_exchange

FIXTURES = Path(__file__).parent / "fixtures" / "filesync"


def _load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def _decode(messages: list[str]) -> list[Packet]:
    return [Packet.decode(base64.b64decode(m)) for m in messages]


def _request(transfer: dict[str, Any]) -> SyncRequest:
    return SyncRequest(
        transfer["dir_name"],
        include_patterns=tuple(transfer["include_patterns"]),
        exclude_patterns=tuple(transfer["exclude_patterns"]),
        follow_paths=tuple(transfer["follow_paths"]),
    )


def _summary(packets: list[Packet]) -> tuple[list[Stat], dict[int, list[bytes]], bool]:
    """The STATs in order, each requested file's DATA chunks (the empty one included), FIN."""
    stats = [p.stat for p in packets if p.type == PACKET_STAT and p.stat is not None]
    data: dict[int, list[bytes]] = {}
    for packet in packets:
        if packet.type == PACKET_DATA:
            data.setdefault(packet.id, []).append(packet.data)
    return stats, data, any(p.type == PACKET_FIN for p in packets)


def _owned_by_us(stats: list[Stat]) -> list[Stat]:
    """The Dockerfile's directory keeps real owners (the CLI's does too): recorded as root."""
    for stat in stats:
        stat.uid, stat.gid = os.getuid(), os.getgid()
    return stats


def _asked_for(paths: set[str]) -> Callable[[Stat], bool]:
    return lambda stat: stat.path in paths


@pytest.fixture
def replayed(tmp_path: Path) -> list[tuple[dict[str, Any], list[Packet]]]:
    """Each transfer of shipit's recording, replayed: the engine's packets fed to a provider
    on the rebuilt tree, and what the provider sent back."""
    root = make_fixture_tree(tmp_path / "ctx")
    out = []
    for transfer in _load("shipit_engine.json")["transfers"]:
        packets = [(d, Packet.decode(base64.b64decode(raw))) for d, raw in transfer["packets"]]
        paths = [p.stat.path for d, p in packets if d == "send" and p.stat is not None]
        asked = {paths[p.id] for d, p in packets if d == "recv" and p.type == PACKET_REQ}
        # in fsutil's chunks, to compare DATA packets with the CLI's one for one
        provider = sync_context(root, root / "Dockerfile", chunk_size=FSUTIL_CHUNK_SIZE).provider
        # the engine's requests, sent once the STATs are in (it cannot ask for a file earlier)
        exchange = run_exchange(provider, _request(transfer), want=_asked_for(asked))
        out.append((transfer, exchange.packets))
    return out


def test_recording_holds_the_three_requests_of_a_dockerfile_build() -> None:
    recording = _load("shipit_engine.json")
    assert recording["engine"].startswith("20.10")
    requests = [_request(t) for t in recording["transfers"]]
    assert sorted(requests, key=repr) == sorted(
        [
            SyncRequest(
                "dockerfile", follow_paths=("Dockerfile", "Dockerfile.dockerignore", "dockerfile")
            ),
            SyncRequest("context", follow_paths=(".dockerignore",)),
            SyncRequest("context", exclude_patterns=("*.log", "docs", "!docs/README.md")),
        ],
        key=repr,
    )


def test_replay_sends_what_was_sent_to_the_engine(
    replayed: list[tuple[dict[str, Any], list[Packet]]],
) -> None:
    for transfer, sent in replayed:
        recorded = _decode([raw for d, raw in transfer["packets"] if d == "send"])
        assert _summary(sent) == _summary(recorded), transfer["dir_name"]
        assert sent[-1].type == PACKET_FIN


def test_stats_and_contents_equal_the_docker_clis(
    replayed: list[tuple[dict[str, Any], list[Packet]]],
) -> None:
    cli = _load("docker_cli.json")
    assert cli["client"].startswith("20.10")
    by_first_paths = {}
    for stream in cli["streams"]:
        stats, data, fin = _summary(_decode(stream["send"]))
        requests = [p.id for p in _decode(stream["recv"]) if p.type == PACKET_REQ]
        by_first_paths[tuple(s.path for s in stats[:2])] = (stats, data, fin, requests)
    assert len(by_first_paths) == 3
    for transfer, sent in replayed:
        stats, data, fin = _summary(sent)
        cli_stats, cli_data, cli_fin, cli_requests = by_first_paths[
            tuple(s.path for s in stats[:2])
        ]
        if transfer["dir_name"] == "dockerfile":
            cli_stats = _owned_by_us(cli_stats)
        assert stats == cli_stats
        assert fin and cli_fin
        # the same files asked for (the engine skips the hard link), the same bytes and chunks
        assert sorted(data) == sorted(cli_requests)
        assert data == cli_data


def test_the_engine_asks_for_every_file_but_the_hard_link() -> None:
    transfer = _load("shipit_engine.json")["transfers"][-1]
    packets = [(d, Packet.decode(base64.b64decode(raw))) for d, raw in transfer["packets"]]
    stats = [p.stat.path for d, p in packets if d == "send" and p.stat is not None]
    asked = [stats[p.id] for d, p in packets if d == "recv" and p.type == PACKET_REQ]
    assert "hard-b" in stats and "hard-b" not in asked
    assert asked == [
        ".dockerignore",
        "Dockerfile",
        "app.py",
        "big.bin",
        "bin/run",
        "bin/suid",
        "café.txt",
        "docs/README.md",
        "hard-a",
        "src/pkg/mod.py",
    ]
