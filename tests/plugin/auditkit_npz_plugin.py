"""A third-party adapter used by the plugin test: a white-box model stored as an ``.npz`` file
(a fixed random-projection feature map ``P`` followed by a linear classifier ``W, b``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from adapters import AdapterOptions, InputSpec
from auditkit.errors import AuditkitError
from auditkit.fsutil import sha256_file


class NpzModel:
    def __init__(self, path: Path) -> None:
        data = np.load(path)
        self.projection = torch.from_numpy(data["P"]).float()
        self.weight, self.bias = data["W"].astype(np.float64), data["b"].astype(np.float64)
        self.description, self.digest = f"npz:{path.name}", sha256_file(path)
        self.num_classes, self.feature_dim = self.weight.shape
        self.input_spec = InputSpec(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.device = torch.device("cpu")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(images.flatten(1) @ self.projection.T)

    def classifier(self) -> tuple[np.ndarray, np.ndarray]:
        return self.weight, self.bias


def load_model(location: str, options: AdapterOptions) -> NpzModel:
    if not Path(location).is_file():
        raise AuditkitError(f"npz model {location} does not exist")
    return NpzModel(Path(location))
