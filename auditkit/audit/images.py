"""Vanilla images for the alignment fit: never marked ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from sqlalchemy import select

from auditkit.errors import AuditkitError
from auditkit.imagefolder import IMAGE_EXTENSIONS, load_image, scan_image_folder
from auditkit.registry.models import Dataset, MarkedItem, Release
from auditkit.registry.store import Registry

T = TypeVar("T")


def vanilla_image_paths(registry: Registry, dataset: Dataset, holdout: Path | None) -> list[Path]:
    """``holdout`` images (any tree of images), or else the dataset's source images that
    no release of the dataset marked."""
    if holdout is not None:
        holdout = Path(holdout)
        if not holdout.is_dir():
            raise AuditkitError(f"--holdout {holdout} is not a directory of images")
        paths = sorted(p for p in holdout.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not paths:
            raise AuditkitError(f"--holdout {holdout} contains no images")
        return paths
    source = Path(dataset.source)
    scan = scan_image_folder(source)
    with registry.session() as session:
        marked = set(session.scalars(
            select(MarkedItem.source_path).join(Release).where(Release.dataset_id == dataset.id)
        ))
    return [source / e.relpath for e in scan.images if e.relpath not in marked]


def choose(items: list[T], count: int, seed: int = 0) -> list[T]:
    """A fixed-seed subset, in order (the choice is independent of the carriers, so any is valid)."""
    if len(items) <= count:
        return items
    index = np.sort(np.random.default_rng(seed).choice(len(items), size=count, replace=False))
    return [items[i] for i in index]


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise AuditkitError(f"{path}: cannot read image ({exc}); remove it from the alignment images") from None


def _rgb_pixels(path: Path) -> np.ndarray:
    pixels = load_image(path).pixels
    return pixels if pixels.shape[0] == 3 else np.repeat(pixels, 3, axis=0)


def batched_features(
    feature_fn: Callable[[torch.Tensor], torch.Tensor], paths: Iterable[Path], batch_size: int = 64
) -> np.ndarray:
    """Features ``[N, d]`` (float64) of the images at ``paths``, in order, batched by image
    size; images are decoded one batch at a time, so memory is bounded by the batch."""
    paths = list(paths)
    out: list[np.ndarray | None] = [None] * len(paths)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, path in enumerate(paths):
        groups.setdefault(_image_size(path), []).append(i)
    with torch.no_grad():
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                batch = torch.from_numpy(np.stack([_rgb_pixels(paths[i]) for i in chunk])) / 255.0
                feats = feature_fn(batch).double().cpu().numpy()
                for j, i in enumerate(chunk):
                    out[i] = feats[j]
    return np.stack(out)  # type: ignore[arg-type]


def load_rgb_batch(paths: list[Path]) -> torch.Tensor:
    """Images of one size as ``[N, 3, H, W]`` floats in [0, 1] (distillation queries, plan pilots)."""
    sizes = {_image_size(p) for p in paths}
    if len(sizes) != 1:
        raise AuditkitError(f"this step needs images of one size; found {len(sizes)} sizes (pass --holdout with images of one size)")
    return torch.from_numpy(np.stack([_rgb_pixels(p) for p in paths])) / 255.0
