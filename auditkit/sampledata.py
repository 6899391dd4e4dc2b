"""Small real and generated image data for the demo, the benchmarks and the tests.

* Fashion-MNIST (Debian package ``dataset-fashion-mnist``, idx files) when installed;
* a generated 10-class dataset of textured shapes otherwise (nothing is downloaded).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist_available(root: Path = FASHION_MNIST_DIR) -> bool:
    return (root / "train-images-idx3-ubyte.gz").exists()


def load_fashion_mnist(split: str = "train", root: Path = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [N, 28, 28]`` and labels ``int64 [N]`` of a Fashion-MNIST split."""
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels


def generate_shapes(
    n_per_class: int, classes: int = 10, size: int = 32, seed: int = 0, *, jitter: float = 0.25, noise: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """A generated RGB dataset: class k is a noisy texture of orientation k·pi/classes plus a
    class-specific colour tint. ``jitter`` (orientation noise, radians) and ``noise`` (pixel
    noise) make neighbouring classes overlap, so — like real data and unlike a toy — a
    classifier cannot separate them perfectly. ``uint8 [N, size, size, 3]``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    images, labels = [], []
    for k in range(classes):
        angle = np.pi * k / classes
        tint = 0.5 + 0.5 * np.array([np.cos(angle), np.sin(2 * angle), np.cos(3 * angle)])
        for _ in range(n_per_class):
            freq = rng.uniform(3, 6)
            phase = rng.uniform(0, 2 * np.pi)
            a = angle + rng.normal(0, jitter)
            wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(a) * xx + np.sin(a) * yy) + phase)
            pixel_noise = rng.normal(0, noise, size=(size, size, 3))
            image = np.clip(wave[..., None] * (0.7 + 0.3 * tint) * 0.8 + 0.1 + pixel_noise, 0, 1)
            images.append((image * 255).round().astype(np.uint8))
            labels.append(k)
    order = rng.permutation(len(labels))
    return np.stack(images)[order], np.asarray(labels, dtype=np.int64)[order]


def write_image_folder(root: Path, images: np.ndarray, labels: np.ndarray, class_names: list[str] | tuple[str, ...],
                       *, first_index: int = 0) -> Path:
    """Write ``images`` as PNGs into ``root/<class>/<index>.png``, numbered from ``first_index``
    (so a large folder can be written in chunks)."""
    root = Path(root)
    for name in class_names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(root / class_names[int(label)] / f"{first_index + index:06d}.png")
    return root
