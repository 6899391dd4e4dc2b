"""Marking memory against dataset size: is peak memory bounded by the batch, not the dataset?

    python benchmarks/marking_memory.py [--sizes 1000,4000,16000] [--fraction 0.5] [--batch-size 32]

For each size n, a generated ImageFolder of n 32x32 RGB images is registered and a release is
marked (``auditkit.marking.release.mark_release``, the code behind ``auditkit mark``) with a
small_resnet_w16 marker (random weights: memory does not depend on them), in a fresh Python
process per size so that peak resident memory (``ru_maxrss``) belongs to one run. Printed: peak
RSS after start-up (imports, registry, marker) and after marking, and their difference.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine


def child(root: Path, fraction: float, batch_size: int) -> None:
    import torch

    from auditkit.datasets import add_dataset
    from auditkit.marking.marker import load_marker
    from auditkit.marking.optimize import MarkingParams
    from auditkit.marking.release import MarkRequest, mark_release
    from auditkit.nets import create_architecture
    from auditkit.owner import init_owner, owner_keys_for
    from auditkit.registry.store import open_registry

    url = f"sqlite:///{root / 'registry.db'}"
    init_owner(url, root / "keys")
    registry = open_registry(url)
    keys = owner_keys_for(registry, root / "keys")
    add_dataset(registry, "data", root / "dataset")
    torch.manual_seed(0)
    torch.save(create_architecture("small_resnet_w16", 10).state_dict(), root / "marker.pt")
    marker = load_marker("small_resnet_w16", root / "marker.pt", device="cpu")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    summary = mark_release(registry, keys, marker, MarkRequest(
        dataset="data", out_dir=root / "release", marker_arch="small_resnet_w16", marker_weights=root / "marker.pt",
        fraction=fraction, params=MarkingParams(psnr=30.0, augment="none"), batch_size=batch_size))
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    registry.close()
    print(json.dumps({"before_mb": before / 1024, "after_mb": after / 1024, "marked": summary.marked, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,4000,16000")
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.fraction, args.batch_size)
        return
    from auditkit.sampledata import generate_shapes, write_image_folder

    print(f"machine: {machine()}; generated 32x32 RGB images, 10 classes, marker small_resnet_w16, q = {args.fraction:g}, "
          f"batch {args.batch_size}, 40 steps, device cpu\n")
    print("| dataset images | marked | peak RSS before marking (MB) | peak RSS after marking (MB) | growth (MB) | marking (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (int(v) for v in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for part in range(0, n, 1000):  # written in chunks so the parent's memory stays small too
                images, labels = generate_shapes(min(1000, n - part) // 10, size=32, seed=part)
                write_image_folder(root / "dataset", images, labels, [f"c{k}" for k in range(10)], first_index=part)
            out = subprocess.run([sys.executable, __file__, "--child", str(root), "--fraction", str(args.fraction),
                                  "--batch-size", str(args.batch_size)], check=True, capture_output=True, text=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {n} | {row['marked']} | {row['before_mb']:.0f} | {row['after_mb']:.0f} | "
                  f"{row['after_mb'] - row['before_mb']:.0f} | {row['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
