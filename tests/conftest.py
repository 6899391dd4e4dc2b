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
