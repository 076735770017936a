"""What machine the numbers come from: CPU, memory, kernel, Docker and tool versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


@dataclass
class MachineInfo:
    cpu_count: int
    cpu_model: str
    memory_gib: float
    kernel: str
    os_name: str
    docker_server: str
    docker_client: str
    python: str
    date: str
    tools: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str]]:
        rows = [
            ("CPUs", str(self.cpu_count)),
            ("CPU model", self.cpu_model),
            ("Memory", f"{self.memory_gib:.1f} GiB"),
            ("Kernel", self.kernel),
            ("OS", self.os_name),
            ("Docker engine", self.docker_server),
            ("Docker client", self.docker_client),
            ("Python", self.python),
        ]
        rows.extend((name, version) for name, version in self.tools.items())
        rows.append(("Date (UTC)", self.date))
        return rows


def cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` in /proc/cpuinfo text (``unknown`` when absent)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("model name", "Model", "cpu model"):
            return value.strip() or "unknown"
    return "unknown"


def memory_gib(meminfo: str) -> float:
    """MemTotal from /proc/meminfo text, in GiB (0 when absent)."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) / (1024 * 1024)
    return 0.0


def os_release(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip().strip('"')
    return platform.system()


def loadavg(text: str | None = None) -> str:
    """The 1/5/15-minute load averages from /proc/loadavg (other work on the machine)."""
    raw = _read("/proc/loadavg") if text is None else text
    parts = raw.split()
    return " / ".join(parts[:3]) if len(parts) >= 3 else "not available"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _output(command: list[str]) -> str:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return "not available"
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0].strip() if text and proc.returncode == 0 else "not available"


def collect(venv_bin: Path, load_at_start: str | None = None) -> MachineInfo:
    """Read the machine; every probe is best effort (``not available`` when it fails)."""
    load = {"Load average 1/5/15 min, end of run": loadavg()}
    if load_at_start:
        load = {"Load average 1/5/15 min, start of run": load_at_start, **load}
    tools = {
        "docker-registry": _output(["docker-registry", "--version"]),
        "moto": _output([str(venv_bin / "python"), "-c", "import moto; print(moto.__version__)"]),
        "awscli": _output([str(venv_bin / "aws"), "--version"]),
        "shipit": _output([str(venv_bin / "shipit"), "--version"]),
    }
    return MachineInfo(
        cpu_count=os.cpu_count() or 0,
        cpu_model=cpu_model(_read("/proc/cpuinfo")),
        memory_gib=memory_gib(_read("/proc/meminfo")),
        kernel=platform.release(),
        os_name=os_release(_read("/etc/os-release")),
        docker_server=_output(
            ["docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"]
        ),
        docker_client=_output(["docker", "version", "--format", "{{.Client.Version}}"]),
        python=sys.version.split()[0],
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        tools={**tools, **load},
    )
