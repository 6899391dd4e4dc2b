"""``auditkit demo``: the whole owner workflow on small built-in data, in a throwaway directory.

1. a registry and owner keys in ``DIR`` (never the user's own);
2. a dataset: Fashion-MNIST (Debian ``dataset-fashion-mnist``) when installed, else generated;
3. a marking network trained on a separate vanilla split;
4. a marked release; 5. a suspect trained on the release and a clean model trained on the
vanilla data (frozen-features threat, paper §5.1); 6. both audited, with signed reports and
HTML pages.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from adapters import AdapterOptions
from auditkit.audit.service import AuditRequest, run_audit
from auditkit.datasets import add_dataset
from auditkit.errors import AuditkitError
from auditkit.marking.marker import load_marker
from auditkit.marking.optimize import MarkingParams
from auditkit.marking.release import MarkRequest, mark_release
from auditkit.nets import create_architecture
from auditkit.owner import init_owner, owner_keys_for
from auditkit.registry.store import open_registry
from auditkit.sampledata import (
    FASHION_MNIST_CLASSES,
    fashion_mnist_available,
    generate_shapes,
    load_fashion_mnist,
    write_image_folder,
)
from auditkit.threats import frozen_features_suspect, load_image_folder
from auditkit.training import to_tensor_images, train_classifier

STAMP = ".auditkit-demo"
MARKER_ARCH = "small_resnet_w16"
FRACTION = 0.4
PSNR_FLOOR = 30.0  # the paper's own lambdas give ~31 dB on 28x28 images (SPEC §2)


@dataclass(frozen=True)
class DemoConfig:
    data: str = "auto"  # auto | fashion-mnist | generated
    dataset_images: int = 5000
    marker_images: int = 10000
    marker_epochs: int = 3
    seed: int = 0


@dataclass(frozen=True)
class DemoResult:
    directory: Path
    data: str
    psnr_mean: float
    marked: int
    suspect_log10_p: float
    clean_log10_p: float
    reports: dict[str, Path]


Say = Callable[[str], None]
Progress = Callable[[int, int], None]


def _prepare_directory(directory: Path) -> None:
    if directory.exists():
        if not (directory / STAMP).exists():
            raise AuditkitError(f"{directory} exists and was not made by `auditkit demo`; pass another --dir")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / STAMP).write_text("made by auditkit demo; safe to delete\n")


def _data(config: DemoConfig) -> tuple[str, tuple, tuple, list[str]]:
    use_fashion = config.data == "fashion-mnist" or (config.data == "auto" and fashion_mnist_available())
    if use_fashion:
        if not fashion_mnist_available():
            raise AuditkitError("Fashion-MNIST is not installed: `apt-get install dataset-fashion-mnist`, or use --data generated")
        train_x, train_y = load_fashion_mnist("train")
        test_x, test_y = load_fashion_mnist("test")
        owner = (test_x[: config.dataset_images], test_y[: config.dataset_images])
        marker = (train_x[: config.marker_images], train_y[: config.marker_images])
        return "fashion-mnist", owner, marker, list(FASHION_MNIST_CLASSES)
    if config.data not in ("auto", "generated"):
        raise AuditkitError(f"--data must be auto, fashion-mnist or generated, got {config.data!r}")
    owner = generate_shapes(config.dataset_images // 10, size=32, seed=config.seed + 7)
    marker = generate_shapes(max(100, config.marker_images // 100), size=32, seed=config.seed + 123)
    return "generated", owner, marker, [f"texture-{k}" for k in range(10)]


def run_demo(directory: Path, config: DemoConfig, say: Say, progress: Callable[[str], Progress]) -> DemoResult:
    """Run the demo in ``directory`` (created, or replaced if an earlier demo made it)."""
    torch.manual_seed(config.seed)
    directory = Path(directory).resolve()
    _prepare_directory(directory)
    url, keys_dir = f"sqlite:///{directory / 'registry.db'}", directory / "keys"
    init_owner(url, keys_dir)
    registry = open_registry(url)
    keys = owner_keys_for(registry, keys_dir)
    say(f"1. Registry and owner keys created in {directory} (your own registry and keys are untouched).")

    kind, (owner_x, owner_y), (marker_x, marker_y), classes = _data(config)
    source = write_image_folder(directory / "dataset", owner_x, owner_y, classes)
    add_dataset(registry, "demo", source)
    say(f"2. Dataset 'demo': {len(owner_y)} {kind} images in {len(classes)} classes, written to {source}.")

    marker = create_architecture(MARKER_ARCH, len(classes))
    train_classifier(marker, to_tensor_images(marker_x), torch.from_numpy(marker_y), epochs=config.marker_epochs,
                     seed=config.seed, progress=progress("training the marking network"))
    marker_path = directory / "marker.pt"
    torch.save(marker.state_dict(), marker_path)
    say(f"3. Marking network ({MARKER_ARCH}) trained on {len(marker_y)} separate vanilla images, saved to {marker_path}.")

    release_dir = directory / "release"
    summary = mark_release(
        registry, keys, load_marker(MARKER_ARCH, marker_path, device="auto"),
        MarkRequest(dataset="demo", out_dir=release_dir, marker_arch=MARKER_ARCH, marker_weights=marker_path,
                    fraction=FRACTION, params=MarkingParams(psnr=PSNR_FLOOR, augment="none")),
        progress=progress("marking the release"),
    )
    say(f"4. Release r1 in {release_dir}: {summary.marked} of {len(owner_y)} images ({FRACTION:.0%} of each class) "
        f"carry a mark, mean PSNR {summary.psnr_mean:.1f} dB (floor {PSNR_FLOOR:g} dB).")

    release_x, release_y = load_image_folder(release_dir)
    vanilla_x, vanilla_y = load_image_folder(source)
    suspect_path, clean_path = directory / "suspect.pt", directory / "clean.pt"
    torch.save(frozen_features_suspect(marker, release_x, release_y, seed=config.seed).state_dict(), suspect_path)
    torch.save(frozen_features_suspect(marker, vanilla_x, vanilla_y, seed=config.seed).state_dict(), clean_path)
    say("5. A suspect classifier was trained on the marked release and a clean one on the vanilla images "
        "(both on the marking network's frozen features).")

    reports: dict[str, Path] = {}
    outcome: dict[str, float] = {}
    for name, path in (("suspect", suspect_path), ("clean", clean_path)):
        result = run_audit(registry, keys, AuditRequest(
            dataset="demo", model=str(path), options=AdapterOptions(arch=MARKER_ARCH),
            out=directory / f"report-{name}.json", html=directory / f"report-{name}.html",
        ))
        reports[name] = result.report_path
        reports[f"{name}-html"] = result.html_path  # type: ignore[assignment]
        outcome[name] = result.results[0]["log10_p"]
    registry.close()
    return DemoResult(directory, kind, summary.psnr_mean, summary.marked, outcome["suspect"], outcome["clean"], reports)
