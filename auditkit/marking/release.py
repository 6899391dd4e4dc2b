"""Writing a marked release: select, mark, copy, hash, record — resumable and atomic.

A release directory is the source tree with a fraction of each class replaced by marked
PNGs, every other file copied byte for byte, and ``manifest.json`` listing every file's
SHA-256. Which files are marked is kept in the owner's registry only: a public list would
let a licensee drop exactly the marked images.

Safety: the source is only read; every file is written to a temporary and renamed; images
are marked in fixed batches whose registry rows are committed with the files, so an
interrupted run resumes (``resume=True``) and ends with the same bytes as an uninterrupted
one; the release stays ``in-progress`` until its manifest is written.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters import WhiteBoxModel
from auditkit import __version__
from auditkit.carriers import carrier_commitment, derive_carriers, derive_selection_seed
from auditkit.datasets import get_dataset
from auditkit.errors import AuditkitError
from auditkit.fsutil import atomic_copy, atomic_write_bytes, remove_stale_temporaries, sha256_bytes, sha256_file
from auditkit.imagefolder import ImageEntry, encode_png, load_image, scan_image_folder
from auditkit.keys import OwnerKeys
from auditkit.marking.marker import marker_identity
from auditkit.marking.optimize import MarkingParams, autocast_for, mark_batch
from auditkit.registry.models import MarkedItem, Release, utcnow
from auditkit.registry.store import Registry

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "auditkit-release-manifest/v1"


@dataclass(frozen=True)
class MarkRequest:
    """Everything ``auditkit mark`` was asked to do."""

    dataset: str
    out_dir: Path
    marker_arch: str
    marker_weights: Path | None = None
    fraction: float = 0.1
    params: MarkingParams = field(default_factory=MarkingParams)
    batch_size: int = 32
    release_name: str | None = None
    release_id: str | None = None  # public identifier the carriers are derived from; default random
    resume: bool = False
    skip_bad: bool = False


@dataclass(frozen=True)
class MarkSummary:
    release: str
    release_id: str
    out_dir: Path
    marked: int
    copied: int
    skipped_bad: list[str]
    psnr_mean: float
    psnr_min: float
    shift_mean: float
    seconds: float
    images_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


ProgressFn = Callable[[int, int], None]


def select_images(images: list[ImageEntry], n_classes: int, fraction: float, seed: int) -> list[int]:
    """Indices of the images to mark: ``round(fraction · n_c)`` of each class (at least one
    when ``fraction > 0``), drawn with a seeded generator; returned sorted."""
    if not 0.0 <= fraction <= 1.0:
        raise AuditkitError(f"--fraction must be in [0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for c in range(n_classes):
        members = [i for i, entry in enumerate(images) if entry.class_index == c]
        k = min(len(members), max(1, round(fraction * len(members)))) if fraction > 0 and members else 0
        if k:
            chosen.extend(int(i) for i in rng.choice(members, size=k, replace=False))
    return sorted(chosen)


def release_path_for(relpath: str) -> str:
    """Marked images are saved as PNG: ``a/b.jpg`` becomes ``a/b.png``."""
    return str(PurePosixPath(relpath).with_suffix(".png"))


def _image_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def _start_or_resume(registry: Registry, request: MarkRequest, model: WhiteBoxModel, keys: OwnerKeys) -> tuple[Release, np.ndarray]:
    out_dir = request.out_dir.resolve()
    with registry.session() as session:
        dataset = get_dataset(session, request.dataset)
        if request.resume:
            candidates = [r for r in dataset.releases if r.status == "in-progress" and Path(r.out_dir) == out_dir
                          and (request.release_name is None or r.name == request.release_name)]
            if not candidates:
                raise AuditkitError(f"no in-progress release of {request.dataset!r} writes to {out_dir}; nothing to resume")
            release = candidates[0]
            if release.marker.get("weights_sha256") != model.digest:
                raise AuditkitError("the marking network differs from the one the release was started with; pass the same --marker-weights")
        else:
            if out_dir.exists() and any(out_dir.iterdir()):
                raise AuditkitError(f"{out_dir} exists and is not empty; choose a new --out, or pass --resume to continue a release there")
            name = request.release_name or f"r{len(dataset.releases) + 1}"
            if any(r.name == name for r in dataset.releases):
                raise AuditkitError(f"dataset {request.dataset!r} already has a release {name!r}; pass another --release")
            release_id = _new_release_id(session, request.release_id)
            carriers = derive_carriers(keys.master_secret, release_id, len(dataset.classes), model.feature_dim)
            release = Release(
                release_id=release_id,
                dataset=dataset,
                name=name,
                out_dir=str(out_dir),
                status="in-progress",
                marker=marker_identity(model, request.marker_arch, request.marker_weights),
                feature_dim=model.feature_dim,
                carrier_commitment=carrier_commitment(carriers),
                params=request.params.to_dict() | {"batch_size": request.batch_size, "selection_seed": derive_selection_seed(keys.master_secret, release_id),
                                                   "auditkit_version": __version__},
                fraction=request.fraction,
            )
            session.add(release)
        n_classes = len(dataset.classes)
    carriers = derive_carriers(keys.master_secret, release.release_id, n_classes, model.feature_dim)
    if carrier_commitment(carriers) != release.carrier_commitment:
        raise AuditkitError("carriers derived from these keys do not match the release's commitment; wrong --keys?")
    return release, carriers


def mark_release(
    registry: Registry,
    keys: OwnerKeys,
    model: WhiteBoxModel,
    request: MarkRequest,
    *,
    progress: ProgressFn | None = None,
) -> MarkSummary:
    """Create (or resume) a marked release of ``request.dataset`` in ``request.out_dir``."""
    started = time.perf_counter()
    release, carriers = _start_or_resume(registry, request, model, keys)
    with registry.session() as session:
        dataset = get_dataset(session, request.dataset)
        source, classes = Path(dataset.source), list(dataset.classes)
    scan = scan_image_folder(source)
    if scan.classes != classes:
        raise AuditkitError(f"classes under {source} changed since `dataset add` ({len(scan.classes)} vs {len(classes)}); register it again")
    if model.num_classes < 1:
        raise AuditkitError("the marking network has no classifier outputs")
    out_dir = Path(release.out_dir)
    if out_dir.exists():
        remove_stale_temporaries(out_dir)
    seed = int(release.params["selection_seed"])
    selected = select_images(scan.images, len(classes), request.fraction, seed)
    selected_set = set(selected)
    targets = {i: release_path_for(scan.images[i].relpath) for i in selected}
    plain_paths = {e.relpath for i, e in enumerate(scan.images) if i not in selected_set} | set(scan.other_files)
    counts = Counter(targets.values())
    clashes = sorted(set(counts) & plain_paths) + sorted(t for t, n in counts.items() if n > 1)
    if clashes:
        raise AuditkitError(f"marked image would overwrite another file in the release: {clashes[0]}; rename it in the source")

    with registry.session() as session:
        done = {item.source_path: item for item in session.scalars(select(MarkedItem).where(MarkedItem.release_id == release.id))}

    total = len(selected) + len(plain_paths)
    completed = 0
    for relpath in sorted(plain_paths):
        target = out_dir / relpath
        if not (target.exists() and sha256_file(target) == sha256_file(source / relpath)):
            atomic_copy(source / relpath, target)
        completed += 1
        if progress:
            progress(completed, total)

    skipped: list[str] = []
    batch_size = int(release.params["batch_size"])
    params = MarkingParams(**{k: release.params[k] for k in MarkingParams.__dataclass_fields__})  # as started
    device = model.device
    autocast = autocast_for(device)
    carriers_t = torch.from_numpy(carriers)
    for start in range(0, len(selected), batch_size):
        batch = selected[start : start + batch_size]
        if all(
            scan.images[i].relpath in done and (out_dir / targets[i]).exists()
            and sha256_file(out_dir / targets[i]) == done[scan.images[i].relpath].sha256_after
            for i in batch
        ):
            completed += len(batch)
            if progress:
                progress(completed, total)
            continue
        loaded = {}
        for i in batch:
            try:
                loaded[i] = load_image(source / scan.images[i].relpath)
            except AuditkitError:
                if not request.skip_bad:
                    raise
                skipped.append(scan.images[i].relpath)
                atomic_copy(source / scan.images[i].relpath, out_dir / scan.images[i].relpath)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in loaded.items():
            groups.setdefault(image.pixels.shape, []).append(i)
        rows: list[MarkedItem] = []
        for members in groups.values():
            pixels = torch.from_numpy(np.stack([loaded[i].pixels for i in members])).to(device)
            result = mark_batch(
                model.features,
                pixels,
                carriers_t[[scan.images[i].class_index for i in members]],
                params,
                [_image_rng(seed, i) for i in members],
                autocast_dtype=autocast,
            )
            marked = result.pixels.cpu().numpy()
            for j, i in enumerate(members):
                data = encode_png(marked[j], loaded[i].alpha, loaded[i].mode)
                atomic_write_bytes(out_dir / targets[i], data)
                rows.append(MarkedItem(
                    release_id=release.id, source_path=scan.images[i].relpath, release_path=targets[i],
                    class_index=scan.images[i].class_index, sha256_before=sha256_file(source / scan.images[i].relpath),
                    sha256_after=sha256_bytes(data), psnr=float(result.psnr[j]), shift=float(result.shift[j]),
                ))
        with registry.session() as session:
            for row in rows:
                previous = session.scalar(select(MarkedItem).where(
                    MarkedItem.release_id == release.id, MarkedItem.source_path == row.source_path))
                if previous is not None:
                    session.delete(previous)
                    session.flush()
                session.add(row)
        completed += len(batch)
        if progress:
            progress(completed, total)

    return _finish(registry, release, out_dir, skipped, started)


def _new_release_id(session: Session, requested: str | None) -> str:
    """A fresh random id, or the caller's (32 lowercase hex digits, not used before). The
    carriers are derived from the master secret and this id: reusing an id for another release
    would reuse its carriers, so an id already in the registry is refused."""
    if requested is None:
        return uuid.uuid4().hex
    if re.fullmatch(r"[0-9a-f]{32}", requested) is None:
        raise AuditkitError(f"--release-id must be 32 lowercase hex digits, got {requested!r}")
    if session.scalar(select(Release).where(Release.release_id == requested)) is not None:
        raise AuditkitError(f"release id {requested} is already used in this registry; carriers must never be reused")
    return requested


def _finish(registry: Registry, release: Release, out_dir: Path, skipped: list[str], started: float) -> MarkSummary:
    files = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))
    manifest = {
        "format": MANIFEST_FORMAT,
        "release_id": release.release_id,
        "carrier_commitment": release.carrier_commitment,
        "files": {p.relative_to(out_dir).as_posix(): sha256_file(p) for p in files},
    }
    data = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    with registry.session() as session:
        row = session.get(Release, release.id)
        assert row is not None
        items = list(session.scalars(select(MarkedItem).where(MarkedItem.release_id == release.id)))
        psnrs = np.array([item.psnr for item in items]) if items else np.array([np.nan])
        shifts = np.array([item.shift for item in items]) if items else np.array([np.nan])
        atomic_write_bytes(out_dir / MANIFEST, data)
        row.status = "complete"
        row.marked_count = len(items)
        row.copied_count = len(files) - len(items)
        row.psnr_mean = float(np.mean(psnrs[np.isfinite(psnrs)])) if np.isfinite(psnrs).any() else None
        row.psnr_min = float(np.min(psnrs)) if items else None
        row.shift_mean = float(np.mean(shifts)) if items else None
        row.manifest_sha256 = sha256_bytes(data)
        row.completed = utcnow()
        summary_counts = (row.marked_count, row.copied_count, row.psnr_mean, row.psnr_min, row.shift_mean)
    seconds = time.perf_counter() - started
    marked, copied, psnr_mean, psnr_min, shift_mean = summary_counts
    return MarkSummary(
        release=release.name, release_id=release.release_id, out_dir=out_dir, marked=marked, copied=copied,
        skipped_bad=skipped, psnr_mean=psnr_mean or float("nan"), psnr_min=psnr_min or float("nan"),
        shift_mean=shift_mean or float("nan"), seconds=seconds, images_per_second=marked / seconds if seconds > 0 else 0.0,
    )
