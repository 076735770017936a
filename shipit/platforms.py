"""Target platforms: parse `--platform` lists, name each platform's local tags, and check before
a build that the engine can run the platform's binaries (natively or through a QEMU emulator)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipit.errors import BuildError, UsageError
from shipit.reference import validate_tag

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")

# Spellings people use for the architectures Go (and so the OCI spec) names.
_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "x64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}
# Architectures an OCI image may declare, each with the name of its QEMU binfmt handler.
QEMU_NAMES = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "arm": "arm",
    "386": "i386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64le": "mips64el",
    "mips64": "mips64",
    "loong64": "loongarch64",
}
_VARIANTS = {"arm": ("v5", "v6", "v7", "v8"), "arm64": ("v8", "v9")}
# What the engine assumes when a platform names no variant.
_DEFAULT_VARIANT = {"arm": "v7", "arm64": "v8"}
# Architectures whose binaries a host of the key runs without emulation.
_NATIVE_TOO = {"amd64": {"386"}, "arm64": {"arm"}}

EMULATION_HINT = (
    "install qemu-user-static and binfmt-support (on Debian: apt-get install qemu-user-static "
    "binfmt-support) so that /proc/sys/fs/binfmt_misc/qemu-{qemu} is registered and enabled, "
    "or build this platform on a native runner and join the images with 'shipit push --merge'"
)


@dataclass(frozen=True)
class Platform:
    """One OS/architecture[/variant] an image is built for, as OCI image indexes name them."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @property
    def suffix(self) -> str:
        """The tag suffix of this platform's image: linux/arm/v7 -> linux-arm-v7."""
        return str(self).replace("/", "-")

    def as_oci(self) -> dict[str, str]:
        """The `platform` object of an image index entry."""
        fields = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            fields["variant"] = self.variant
        return fields

    def matches(self, os: str, architecture: str, variant: str | None = None) -> bool:
        """Whether an image config's os/architecture/variant is this platform.

        A missing variant on either side stands for the architecture's default (arm64 is v8).
        """
        if (os, _normal_arch(architecture)) != (self.os, self.architecture):
            return False
        default = _DEFAULT_VARIANT.get(self.architecture)
        return (self.variant or default) == (variant or default)


def _normal_arch(value: str) -> str:
    return _ARCH_ALIASES.get(value.lower(), value.lower())


def parse_platform(text: str) -> Platform:
    """`linux/arm64`, `linux/arm/v7`, `linux/aarch64` (normalised to arm64); a usage error else."""
    parts = [p.strip() for p in text.strip().split("/")]
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(
            f"invalid platform '{text.strip()[:60]}': expected OS/ARCH[/VARIANT], e.g. linux/arm64"
        )
    os_name, arch = parts[0].lower(), _normal_arch(parts[1])
    variant = parts[2].lower() if len(parts) == 3 else None
    if os_name != "linux":
        raise UsageError(
            f"unsupported platform '{text.strip()}': shipit builds Linux images (linux/ARCH)"
        )
    if arch not in QEMU_NAMES:
        known = ", ".join(sorted(QEMU_NAMES))
        raise UsageError(f"unknown architecture '{parts[1]}' in '{text.strip()}' (known: {known})")
    if variant is not None and variant not in _VARIANTS.get(arch, ()):
        raise UsageError(f"unknown variant '{variant}' for {arch} in '{text.strip()}'")
    if arch == "arm64" and variant == "v8":
        variant = None  # the default: linux/arm64 and linux/arm64/v8 are one platform
    return Platform(os=os_name, architecture=arch, variant=variant)


def parse_platforms(values: str | Sequence[str] | None) -> tuple[Platform, ...]:
    """A comma-separated list (or several) of platforms, in order; a repeated one is an error."""
    if values is None:
        return ()
    texts = [values] if isinstance(values, str) else list(values)
    platforms: list[Platform] = []
    for text in texts:
        for item in text.split(","):
            if not item.strip():
                continue
            platform = parse_platform(item)
            if platform in platforms:
                raise UsageError(f"platform {platform} is listed twice in --platform")
            platforms.append(platform)
    return tuple(platforms)


def platform_tag(tag: str, platform: Platform) -> str:
    """The tag that holds one platform's image of a multi-platform tag: 1.2.3-linux-arm64."""
    return validate_tag(f"{tag}-{platform.suffix}")


def image_platform(raw: Mapping[str, Any]) -> Platform:
    """The platform an image config (or the engine's image inspect) declares."""
    arch = _normal_arch(str(raw.get("Architecture") or raw.get("architecture") or "unknown"))
    variant = raw.get("Variant") or raw.get("variant") or None
    if arch == "arm64" and variant == "v8":
        variant = None
    os_name = str(raw.get("Os") or raw.get("os") or "unknown")
    return Platform(os=os_name, architecture=arch, variant=str(variant) if variant else None)


# ---------------------------------------------------------------- can the engine build it?


@dataclass(frozen=True)
class Emulation:
    """Which foreign architectures this machine's kernel runs through binfmt_misc handlers."""

    enabled: frozenset[str]  # handler names, e.g. {"aarch64"}
    status_on: bool

    @classmethod
    def read(cls, directory: Path | None = None) -> Emulation:
        """The registered and enabled `qemu-*` handlers (none when binfmt_misc is not mounted)."""
        directory = directory or BINFMT_DIR
        status = _first_line(directory / "status")
        enabled = set()
        try:
            entries = list(directory.glob("qemu-*"))
        except OSError:
            entries = []
        for entry in entries:
            if _first_line(entry) == "enabled":
                enabled.add(entry.name.removeprefix("qemu-"))
        return cls(enabled=frozenset(enabled), status_on=status == "enabled")

    def runs(self, platform: Platform) -> bool:
        return self.status_on and QEMU_NAMES[platform.architecture] in self.enabled


def _first_line(path: Path) -> str:
    try:
        with path.open(encoding="ascii", errors="replace") as handle:
            return handle.readline().strip()
    except OSError:
        return ""


def is_local_engine(engine_host: str) -> bool:
    """Whether the engine runs on this machine (its binfmt handlers are then ours to read)."""
    return engine_host.startswith(("unix://", "npipe://")) or engine_host.startswith(
        ("tcp://127.", "tcp://localhost", "http://127.", "http://localhost")
    )


def runs_natively(platform: Platform, engine_arch: str) -> bool:
    """Whether an engine of `engine_arch` runs `platform`'s binaries without emulation."""
    native = _normal_arch(engine_arch)
    return platform.architecture == native or platform.architecture in _NATIVE_TOO.get(native, ())


def check_buildable(
    platforms: Sequence[Platform],
    *,
    engine_os: str,
    engine_arch: str,
    emulation: Emulation | None,
) -> None:
    """Refuse, before anything is built, a platform the engine can neither run nor emulate.

    `emulation` is None for a remote engine, whose handlers cannot be read from here; the
    built image's architecture is checked after the build instead.
    """
    native = _normal_arch(engine_arch)
    for platform in platforms:
        if platform.os != engine_os:
            raise BuildError(
                f"the engine runs {engine_os} containers and cannot build {platform}",
                hint="point DOCKER_HOST at an engine for that OS",
            )
        if runs_natively(platform, native):
            continue
        if emulation is None or emulation.runs(platform):
            continue
        qemu = QEMU_NAMES[platform.architecture]
        reason = (
            "binfmt_misc emulation is switched off (/proc/sys/fs/binfmt_misc/status)"
            if not emulation.status_on and qemu in emulation.enabled
            else f"no emulator for {qemu} is registered"
        )
        raise BuildError(
            f"cannot build {platform} on this {engine_os}/{native} engine: {reason}",
            hint=EMULATION_HINT.format(qemu=qemu),
        )
