"""Describing releases (for ``auditkit release list/show``)."""

from __future__ import annotations

from typing import Any

from auditkit.registry.models import Release


def release_summary(release: Release, *, with_items: bool = False) -> dict[str, Any]:
    """A JSON-ready description of a release. Never includes carriers (they are not stored)."""
    summary: dict[str, Any] = {
        "name": release.name,
        "release_id": release.release_id,
        "status": release.status,
        "out_dir": release.out_dir,
        "fraction": release.fraction,
        "marker": release.marker,
        "feature_dim": release.feature_dim,
        "carrier_commitment": release.carrier_commitment,
        "params": release.params,
        "marked_count": release.marked_count,
        "copied_count": release.copied_count,
        "psnr_mean": release.psnr_mean,
        "psnr_min": release.psnr_min,
        "shift_mean": release.shift_mean,
        "manifest_sha256": release.manifest_sha256,
        "created": release.created.isoformat(),
        "completed": release.completed.isoformat() if release.completed else None,
    }
    if with_items:
        summary["items"] = [
            {"source": i.source_path, "release": i.release_path, "class": i.class_index, "psnr": i.psnr, "shift": i.shift,
             "sha256_before": i.sha256_before, "sha256_after": i.sha256_after}
            for i in release.items
        ]
    return summary
