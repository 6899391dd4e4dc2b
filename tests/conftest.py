from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_image_folder(root: Path, classes: int = 3, per_class: int = 4, size: int = 16, seed: int = 0) -> Path:
    """A small ImageFolder tree of random RGB PNGs."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{c:02d}" / f"img{i:03d}.png")
    return root


@pytest.fixture
def owner_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing auditkit at a private registry and key directory."""
    env = dict(os.environ)
    env["AUDITKIT_REGISTRY"] = f"sqlite:///{tmp_path / 'registry.db'}"
    env["AUDITKIT_KEYS"] = str(tmp_path / "keys")
    for key in ("AUDITKIT_REGISTRY", "AUDITKIT_KEYS"):
        monkeypatch.setenv(key, env[key])
    return env


def run_cli(*args: str, env: dict[str, str], cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real ``auditkit`` console entry point in a subprocess."""
    result = subprocess.run(
        [sys.executable, "-m", "auditkit.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"auditkit {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def trained_marker(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A small_resnet_w16 trained briefly on generated 32x32 shapes and saved as a state
    dict: a real (if small) marking network, made once per test session."""
    import torch

    from auditkit.nets import create_architecture
    from auditkit.sampledata import generate_shapes
    from auditkit.training import to_tensor_images, train_classifier

    torch.manual_seed(0)
    images, labels = generate_shapes(100, size=32, seed=123)
    model = create_architecture("small_resnet_w16", 10)
    train_classifier(model, to_tensor_images(images), torch.from_numpy(labels), epochs=3, seed=0)
    path = tmp_path_factory.mktemp("marker") / "marker.pt"
    torch.save(model.state_dict(), path)
    return {"path": path, "arch": "small_resnet_w16", "model": model}


def fixed_draw(keys_dir: Path, name: str) -> list[str]:
    """Fix the carrier draw of a test: replace the master secret `auditkit init` created by one
    derived from ``name`` and return the ``--release-id`` arguments for ``auditkit mark``.

    With fresh random carriers in every run a clean model's p-value is uniform, so a test
    asserting p > 0.01 would fail in 1% of runs by design; with a fixed draw each test's
    outcome is a fixed fact. (The registry holds only the signing key, which stays as created.)"""
    import hashlib

    from auditkit.fsutil import atomic_write_bytes

    secret = hashlib.sha256(f"auditkit tests {name}".encode()).hexdigest()
    atomic_write_bytes(Path(keys_dir) / "master.secret", secret.encode() + b"\n", 0o600)
    return ["--release-id", hashlib.sha256(f"release {name}".encode()).hexdigest()[:32]]


def shapes_folder(root: Path, per_class: int = 30, size: int = 32, seed: int = 7) -> Path:
    """A generated 10-class ImageFolder of learnable RGB textures."""
    from auditkit.sampledata import generate_shapes, write_image_folder

    images, labels = generate_shapes(per_class, size=size, seed=seed)
    return write_image_folder(root, images, labels, [f"class{k}" for k in range(10)])
