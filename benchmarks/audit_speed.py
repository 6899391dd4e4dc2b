"""Audit time against the time of a bare forward pass over the same alignment images.

    python benchmarks/audit_speed.py [--arch mobilenet_v2] [--size 224] [--images 600]

Builds a throwaway registry with one release (marked with 1 optimisation step: the mark's
strength does not matter for timing), then times `run_audit` (image decoding, suspect and
marker features, alignment fit, test, signing, HTML) for a suspect that needs alignment, and a
bare batched forward pass of the suspect over the same alignment images already in memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _common import machine, mobilenet_v2_imagenet, real_images
from adapters import AdapterOptions
from adapters.pytorch import from_module
from auditkit.audit.service import AuditRequest, run_audit
from auditkit.datasets import add_dataset
from auditkit.marking.marker import load_marker
from auditkit.marking.optimize import MarkingParams
from auditkit.marking.release import MarkRequest, mark_release
from auditkit.nets import create_architecture
from auditkit.owner import init_owner, owner_keys_for
from auditkit.registry.store import open_registry
from auditkit.sampledata import write_image_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="mobilenet_v2", help="mobilenet_v2 (ImageNet weights) or a built-in small net")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--align-images", type=int, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.arch == "mobilenet_v2":
            marker_module, _ = mobilenet_v2_imagenet()
            marker_module.classifier[-1] = nn.Linear(1280, 10)  # a 10-class head for a 10-class dataset
        else:
            marker_module = create_architecture(args.arch, 10).eval()
        marker_path = root / "marker.pt"
        torch.save(marker_module.state_dict(), marker_path)
        images = real_images(args.images, args.size).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        labels = np.arange(args.images) % 10
        source = write_image_folder(root / "data", images, labels, [f"c{k}" for k in range(10)])
        url = f"sqlite:///{root / 'registry.db'}"
        init_owner(url, root / "keys")
        registry = open_registry(url)
        keys = owner_keys_for(registry, root / "keys")
        add_dataset(registry, "bench", source)
        marker = load_marker(args.arch, marker_path, device="cpu")
        mark_release(registry, keys, marker, MarkRequest(dataset="bench", out_dir=root / "release", marker_arch=args.arch,
                                                         marker_weights=marker_path, fraction=0.02, params=MarkingParams(steps=1)))
        # A suspect needing alignment: the marker's features through a random linear map, then a head.
        body = from_module(marker_module).body.cpu()
        dim = marker.feature_dim
        suspect = nn.Sequential(body, nn.Linear(dim, dim, bias=False), nn.Linear(dim, 10)).eval()
        suspect_path = root / "suspect.pt"
        torch.save(suspect, suspect_path)

        start = time.perf_counter()
        outcome = run_audit(registry, keys, AuditRequest(
            dataset="bench", model=str(suspect_path), options=AdapterOptions(unsafe_load=True, device="cpu"),
            align_images=args.align_images, out=root / "report.json", html=root / "report.html"))
        audit_seconds = time.perf_counter() - start
        n_align = outcome.predicate["parameters"]["alignment_images"]

        wrapped = from_module(suspect, AdapterOptions(device="cpu"))
        batch = torch.from_numpy(images[:n_align]).permute(0, 3, 1, 2).float() / 255
        start = time.perf_counter()
        with torch.no_grad():
            for i in range(0, n_align, 64):
                wrapped.features(batch[i : i + 64])
        forward_seconds = time.perf_counter() - start

    print(f"machine: {machine()}; marker/suspect backbone {args.arch}, d={dim}, images {args.size}x{args.size}\n")
    print("| alignment images | audit (s) | bare suspect forward (s) | ratio |")
    print("|---:|---:|---:|---:|")
    print(f"| {n_align} | {audit_seconds:.1f} | {forward_seconds:.1f} | {audit_seconds / forward_seconds:.1f} |")


if __name__ == "__main__":
    main()
