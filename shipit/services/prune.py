"""`shipit prune`: plan and remove what shipit made (labelled containers, networks, old images)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from shipit.adapters.engine.client import Engine
from shipit.errors import UsageError
from shipit.model import (
    ContainerSummary,
    ImageSummary,
    NetworkInfo,
    megabytes,
)
from shipit.output.reporter import Reporter
from shipit.services.build import CACHE_TAG, MANAGED_LABEL
from shipit.services.containers import BUILTIN_NETWORKS, MANAGED_FLAG, MANAGED_SELECTOR


@dataclass(frozen=True)
class PrunePlan:
    """What `shipit prune` would remove (and keep), decided from labels alone."""

    name: str
    keep: int
    containers: tuple[ContainerSummary, ...]
    networks: tuple[NetworkInfo, ...]
    # Builds beyond the newest `keep`: every tag of each is removed (the image goes with its last tag).
    old_builds: tuple[ImageSummary, ...]
    dangling: tuple[ImageSummary, ...]
    kept_builds: tuple[ImageSummary, ...]
    # Things shipit made that stay, and why (a running container, a network still in use).
    left: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.containers or self.networks or self.old_builds or self.dangling)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "keep": self.keep,
            "containers": [
                {"id": c.id, "name": c.name, "image": c.image, "state": c.state}
                for c in self.containers
            ],
            "networks": [{"id": n.id, "name": n.name} for n in self.networks],
            "images": [_image_json(i) for i in self.old_builds],
            "dangling": [_image_json(i) for i in self.dangling],
            "kept": [_image_json(i) for i in self.kept_builds],
            "left": [{"what": w, "reason": r} for w, r in self.left],
        }


@dataclass(frozen=True)
class PruneOutcome:
    """What `--yes` removed, and what the engine refused (e.g. an image a container uses)."""

    removed: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "removed": list(self.removed),
            "skipped": [{"what": w, "reason": r} for w, r in self.skipped],
        }


def _image_json(image: ImageSummary) -> dict[str, Any]:
    return {
        "id": image.id,
        "tags": list(image.repo_tags),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(image.created)),
        "size_bytes": image.size,
    }


def _is_cache_image(image: ImageSummary, name: str) -> bool:
    """The builder-stage cache (NAME:buildcache) is not a build: it stays while tagged."""
    return bool(image.repo_tags) and all(t == f"{name}:{CACHE_TAG}" for t in image.repo_tags)


def plan_prune(engine: Engine, *, name: str, keep: int, include_running: bool = False) -> PrunePlan:
    """Decide what to remove: only containers/networks labelled io.shipit.managed=true and
    images labelled io.shipit.image=NAME. Nothing else on the machine is even looked at.
    """
    if keep < 0:
        raise UsageError("--keep must be 0 or more")
    left: list[tuple[str, str]] = []

    containers: list[ContainerSummary] = []
    for c in engine.containers(label=MANAGED_SELECTOR):
        if c.labels.get(MANAGED_FLAG) != "true":
            continue
        if c.state in ("running", "restarting", "paused") and not include_running:
            left.append((f"container {c.name}", f"{c.state} (pass --all to remove it)"))
            continue
        containers.append(c)
    going = {c.id for c in containers}

    networks: list[NetworkInfo] = []
    for n in engine.networks(label=MANAGED_SELECTOR):
        if n.labels.get(MANAGED_FLAG) != "true" or n.name in BUILTIN_NETWORKS:
            continue
        users = set(n.containers) - going
        if users:
            left.append((f"network {n.name}", f"in use by {len(users)} container(s)"))
            continue
        networks.append(n)

    selector = f"{MANAGED_LABEL}={name}"
    ours = [i for i in engine.images(label=selector) if i.labels.get(MANAGED_LABEL) == name]
    builds = [i for i in ours if i.repo_tags and not _is_cache_image(i, name)]
    builds.sort(key=lambda i: (i.created, i.id), reverse=True)
    kept, old = builds[:keep], builds[keep:]
    if keep == 0:
        # No build kept: the builder-stage cache (NAME:buildcache) serves none, so it goes too.
        old += [i for i in ours if i.repo_tags and _is_cache_image(i, name)]
    dangling = [i for i in ours if not i.repo_tags]
    return PrunePlan(
        name=name,
        keep=keep,
        containers=tuple(containers),
        networks=tuple(networks),
        old_builds=tuple(old),
        dangling=tuple(sorted(dangling, key=lambda i: (i.created, i.id))),
        kept_builds=tuple(kept),
        left=tuple(left),
    )


def describe_plan(plan: PrunePlan) -> list[str]:
    """One line per thing to remove or keep, for the plain-text plan."""
    lines = [
        *(f"container  {c.name} ({c.state}, {c.image})" for c in plan.containers),
        *(f"network    {n.name}" for n in plan.networks),
        *(
            f"image      {', '.join(i.repo_tags)} ({i.id[7:19]}, {megabytes(i.size)})"
            for i in plan.old_builds
        ),
        *(f"dangling   {i.id[7:19]} ({megabytes(i.size)})" for i in plan.dangling),
    ]
    if not lines:
        lines.append(f"nothing to remove (keeping the newest {plan.keep} builds of {plan.name})")
    return lines


def apply_prune(engine: Engine, reporter: Reporter, plan: PrunePlan) -> PruneOutcome:
    """Remove what the plan lists: containers, then networks, then old tags, then dangling images."""
    removed: list[str] = []
    skipped: list[tuple[str, str]] = []

    def record(what: str, reason: str | None) -> None:
        if reason:
            skipped.append((what, reason))
            reporter.warn(f"kept {what}: {reason}")
        else:
            removed.append(what)
            reporter.info(f"removed {what}")

    for c in plan.containers:
        record(f"container {c.name}", engine.remove_container(c.id, force=c.state != "exited"))
    for n in plan.networks:
        record(f"network {n.name}", engine.remove_network(n.id))
    for image in plan.old_builds:
        for tag in image.repo_tags:
            # The tag may have moved to another image since the plan was made: leave it then.
            current = engine.image(tag)
            if current is None:
                continue
            if current.id != image.id:
                record(f"tag {tag}", f"now points at {current.id[7:19]}, not the planned image")
                continue
            record(f"tag {tag}", engine.remove_image_if_unused(tag))
    for image in plan.dangling:
        record(f"image {image.id[7:19]}", engine.remove_image_if_unused(image.id))
    return PruneOutcome(removed=tuple(removed), skipped=tuple(skipped))
