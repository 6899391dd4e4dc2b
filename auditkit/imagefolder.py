"""ImageFolder trees (``ROOT/<class>/<...>/<image>``) and lossless image I/O.

Class order follows torchvision's ``ImageFolder``: sorted class directory names; images
are found recursively under each class directory. Files that are not images are kept
(a release copies them unchanged) but are not counted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from auditkit.errors import AuditkitError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LOSSLESS_EXTENSIONS = (".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff")
SUPPORTED_MODES = ("L", "RGB", "RGBA")


@dataclass(frozen=True)
class ImageEntry:
    """One image of the tree: its POSIX path relative to the root, and its class index."""

    relpath: str
    class_index: int


@dataclass(frozen=True)
class ImageFolderScan:
    root: Path
    classes: list[str]
    images: list[ImageEntry]
    other_files: list[str]

    def class_counts(self) -> list[int]:
        counts = [0] * len(self.classes)
        for entry in self.images:
            counts[entry.class_index] += 1
        return counts


def scan_image_folder(root: Path) -> ImageFolderScan:
    """List the classes, images and other files of an ImageFolder tree, in a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise AuditkitError(f"{root} is not a directory; pass an ImageFolder tree DIR/<class>/<image>")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise AuditkitError(f"{root} has no class directories; expected an ImageFolder tree DIR/<class>/<image>")
    images: list[ImageEntry] = []
    others: list[str] = [p.name for p in sorted(root.iterdir()) if p.is_file()]
    for index, class_dir in enumerate(class_dirs):
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
            relpath = path.relative_to(root).as_posix()
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                images.append(ImageEntry(relpath, index))
            else:
                others.append(relpath)
    if not images:
        raise AuditkitError(f"{root} contains no images ({', '.join(IMAGE_EXTENSIONS)}) under its class directories")
    return ImageFolderScan(root, [d.name for d in class_dirs], images, others)


@dataclass
class LoadedImage:
    """Pixels as float32 ``[C, H, W]`` in 0..255 (C = 1 for grayscale, else 3), plus the
    alpha channel kept aside (never marked) and the original mode."""

    pixels: np.ndarray
    alpha: np.ndarray | None
    mode: str


def load_image(path: Path) -> LoadedImage:
    """Read an image for marking; corrupt files and unsupported modes raise one-line errors."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode not in SUPPORTED_MODES:
                raise AuditkitError(
                    f"{path}: image mode {mode} is not supported (only 8-bit L, RGB, RGBA); "
                    "convert it, or pass --skip-bad to copy it unmarked"
                )
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise AuditkitError(f"{path}: cannot read image ({exc}); fix or remove it, or pass --skip-bad") from None
    alpha = None
    if mode == "L":
        pixels = array[None]
    else:
        if mode == "RGBA":
            alpha = array[..., 3].copy()
        pixels = array[..., :3].transpose(2, 0, 1)
    return LoadedImage(np.ascontiguousarray(pixels, dtype=np.float32), alpha, mode)


def encode_png(pixels: np.ndarray, alpha: np.ndarray | None, mode: str) -> bytes:
    """Encode integer pixels ``[C, H, W]`` (0..255) losslessly as PNG in the original mode."""
    array = np.asarray(pixels, dtype=np.uint8)
    if mode == "L":
        image = Image.fromarray(array[0], mode="L")
    else:
        hwc = array.transpose(1, 2, 0)
        if mode == "RGBA":
            assert alpha is not None
            hwc = np.concatenate([hwc, alpha[..., None]], axis=2)
        image = Image.fromarray(np.ascontiguousarray(hwc), mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def check_readable(path: Path) -> None:
    """Check an image's header (cheap; pixels are decoded only when marking)."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise AuditkitError(f"{path}: cannot read image ({exc}); fix or remove it") from None
