"""``auditkit audit``: load the suspect, test it against one or all releases, sign the report.

Library entry point: :func:`run_audit`. The CLI only builds an :class:`AuditRequest`.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from adapters import AdapterOptions, WhiteBoxModel, load_model, resolve_adapter_name
from auditkit import __version__
from auditkit.audit.align import Alignment, fit_alignment, identity_alignment
from auditkit.audit.images import batched_features, choose, vanilla_image_paths
from auditkit.audit.report import ASSUMPTIONS_WHITE_BOX, build_release_result, write_html
from auditkit.audit.whitebox import cosine_test
from auditkit.carriers import carrier_commitment, derive_carriers
from auditkit.datasets import get_dataset, get_release
from auditkit.errors import AuditkitError
from auditkit.evidence import build_statement, sign_statement, write_envelope
from auditkit.fsutil import sha256_bytes
from auditkit.keys import OwnerKeys
from auditkit.marking.marker import reload_marker
from auditkit.registry.models import Audit, Release
from auditkit.registry.store import Registry
from auditkit.stats import holm_adjust, to_log10

MODES = ("auto", "white-box", "loss-gap", "distill")


@dataclass(frozen=True)
class AuditRequest:
    dataset: str
    model: str
    adapter: str = "auto"
    options: AdapterOptions = field(default_factory=AdapterOptions)
    release: str = "all"
    mode: str = "auto"
    holdout: Path | None = None
    align_images: int | None = None
    no_align: bool = False
    class_map: Path | None = None
    marker_weights: Path | None = None
    out: Path | None = None
    html: Path | None = None


@dataclass(frozen=True)
class AuditOutcome:
    predicate: dict[str, Any]
    report_path: Path
    html_path: Path | None

    @property
    def results(self) -> list[dict[str, Any]]:
        return self.predicate["results"]  # type: ignore[no-any-return]


def read_class_map(path: Path | None, classes: list[str], suspect_classes: int) -> np.ndarray:
    """Suspect output index for each dataset class. Default: the same index (then the class
    counts must match). A map file is JSON ``{"<dataset class name or index>": <suspect index>}``
    covering every dataset class."""
    if path is None:
        if suspect_classes != len(classes):
            raise AuditkitError(
                f"the suspect has {suspect_classes} classes but the dataset has {len(classes)}; pass --class-map FILE "
                'mapping each dataset class to a suspect output, e.g. {"cat": 281, "dog": 207}'
            )
        return np.arange(len(classes))
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AuditkitError(f"cannot read class map {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise AuditkitError(f"class map {path} must be a JSON object {{dataset class: suspect index}}")
    rows = []
    for index, name in enumerate(classes):
        value = raw.get(name, raw.get(str(index)))
        if not isinstance(value, int) or not 0 <= value < suspect_classes:
            raise AuditkitError(f"class map {path} gives no valid suspect index (0..{suspect_classes - 1}) for class {name!r}")
        rows.append(value)
    if len(set(rows)) != len(rows):
        raise AuditkitError(f"class map {path} maps two dataset classes to the same suspect output")
    return np.asarray(rows)


def _releases(dataset: Any, name: str, session: Any) -> list[Release]:
    if name == "all":
        complete = [r for r in dataset.releases if r.status == "complete"]
        if not complete:
            raise AuditkitError(f"dataset {dataset.name!r} has no complete release; run `auditkit mark` first")
        return complete
    release = get_release(session, dataset, name)
    if release.status != "complete":
        raise AuditkitError(f"release {name!r} is {release.status}; finish it with `auditkit mark --resume` first")
    return [release]


def _align(request: AuditRequest, marker_feats: np.ndarray, suspect_feats: np.ndarray) -> Alignment:
    same = identity_alignment(marker_feats, suspect_feats)
    if same is not None:
        return same
    if request.no_align:
        if marker_feats.shape[1] != suspect_feats.shape[1]:
            raise AuditkitError(
                f"--no-align needs the suspect's feature dimension ({suspect_feats.shape[1]}) to equal the marker's "
                f"({marker_feats.shape[1]})"
            )
        d = marker_feats.shape[1]
        return Alignment(np.eye(d), np.zeros(d), 0, float("nan"), 0.0, True)
    return fit_alignment(marker_feats, suspect_feats)


def run_audit(registry: Registry, keys: OwnerKeys, request: AuditRequest) -> AuditOutcome:
    """Audit ``request.model`` against the requested releases and write the signed report."""
    if request.mode not in MODES:
        raise AuditkitError(f"--mode must be one of {', '.join(MODES)}")
    if request.mode in ("loss-gap", "distill"):
        raise AuditkitError(f"--mode {request.mode} (black-box) is not available in this version; use white-box")
    adapter = resolve_adapter_name(request.model, request.adapter)
    model = load_model(request.model, request.options, adapter)
    if not isinstance(model, WhiteBoxModel):
        raise AuditkitError(f"{request.model} gives logits only; white-box audits need features and a classifier")
    started = datetime.now(timezone.utc)
    with registry.session() as session:
        dataset = get_dataset(session, request.dataset)
        releases = _releases(dataset, request.release, session)
        classes = list(dataset.classes)
        dataset_name = dataset.name
    rows = read_class_map(request.class_map, classes, model.num_classes)
    weight, _ = model.classifier()
    weight = weight[rows]

    paths = vanilla_image_paths(registry, dataset, request.holdout)
    largest = max(r.feature_dim for r in releases)
    wanted = request.align_images or max(2 * (largest + 1), 512)
    paths = choose(paths, wanted)
    suspect_feats = batched_features(model.features, paths)
    if suspect_feats.shape[1] != weight.shape[1]:  # pragma: no cover - adapters guarantee this
        raise AuditkitError("suspect features do not match its classifier's input dimension")

    marker_cache: dict[str, np.ndarray] = {}
    results = []
    for release in releases:
        digest = release.marker["weights_sha256"]
        if digest not in marker_cache:
            marker = reload_marker(release.marker, request.marker_weights, device=request.options.device)
            marker_cache[digest] = batched_features(marker.features, paths)
        alignment = _align(request, marker_cache[digest], suspect_feats)
        carriers = derive_carriers(keys.master_secret, release.release_id, len(classes), release.feature_dim)
        if carrier_commitment(carriers) != release.carrier_commitment:
            raise AuditkitError(f"carriers of release {release.name!r} do not match its commitment; wrong --keys?")
        test = cosine_test(weight @ alignment.matrix, carriers)
        results.append(build_release_result(release, classes, alignment, test))
    adjusted = holm_adjust([r["log10_p"] * math.log(10) for r in results])
    for result, log_adj in zip(results, adjusted):
        result["log10_p_holm"] = to_log10(float(log_adj))

    predicate: dict[str, Any] = {
        "dataset": dataset_name,
        "model": {"location": request.model, "sha256": model.digest, "adapter": adapter,
                  "description": model.description, "num_classes": model.num_classes, "feature_dim": model.feature_dim},
        "mode": "white-box",
        "null_hypothesis": "the suspect model was not trained on the release: each carrier is uniform on the sphere "
                           "and independent of the model",
        "assumptions": ASSUMPTIONS_WHITE_BOX,
        "parameters": {"release": request.release, "alignment_images": len(paths), "holdout": str(request.holdout) if request.holdout else None,
                       "no_align": request.no_align, "class_map": rows.tolist()},
        "results": results,
        "software": {"auditkit": __version__, "python": platform.python_version()},
        "started": started.isoformat(),
        "finished": datetime.now(timezone.utc).isoformat(),
    }
    subjects = [{"name": Path(request.model).name or request.model, "digest": {"sha256": model.digest}}]
    envelope = sign_statement(build_statement(subjects, predicate), keys.signing_key)
    report_path = request.out or Path(f"audit-{dataset_name}-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    data = write_envelope(report_path, envelope)
    html_path = None
    if request.html is not None:
        write_html(request.html, predicate)
        html_path = request.html
    with registry.session() as session:
        for release, result in zip(releases, results):
            session.add(Audit(
                release_id=release.id, model_digest=model.digest, model_location=request.model, adapter=adapter,
                mode="white-box", log10_p=result["log10_p"], report_sha256=sha256_bytes(data), report_path=str(Path(report_path).resolve()),
            ))
    return AuditOutcome(predicate, Path(report_path), html_path)
