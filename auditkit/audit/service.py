"""``auditkit audit``: load the suspect, test it against one or all releases, sign the report.

Library entry point: :func:`run_audit`. The CLI only builds an :class:`AuditRequest`.
"""

from __future__ import annotations

import json
import math
import platform
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from adapters import AdapterOptions, BlackBoxModel, WhiteBoxModel, load_model, resolve_adapter_name
from adapters.http_api import public_location
from auditkit import __version__
from auditkit.audit.align import Alignment, fit_alignment, identity_alignment
from auditkit.audit.images import batched_features, choose, vanilla_image_paths
from auditkit.audit.distill import DistillParams, distill
from auditkit.audit.lossgap import LossGapParams, loss_gap_test
from auditkit.audit.report import ASSUMPTIONS, build_release_result, release_identity, write_html
from auditkit.audit.whitebox import cosine_test
from auditkit.carriers import carrier_commitment, derive_carriers
from auditkit.datasets import get_dataset, get_release
from auditkit.errors import AuditkitError
from auditkit.evidence import build_statement, sign_statement, write_envelope
from auditkit.fsutil import sha256_bytes
from auditkit.keys import OwnerKeys
from auditkit.marking.marker import reload_marker
from auditkit.registry.models import Audit, MarkedItem, Release
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
    loss_gap: LossGapParams = field(default_factory=LossGapParams)
    distill: DistillParams = field(default_factory=DistillParams)
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


def _whitebox_results(request: AuditRequest, model: WhiteBoxModel, releases: list[Release], classes: list[str],
                      rows: np.ndarray, paths: list[Path], keys: OwnerKeys) -> list[dict[str, Any]]:
    """Paper §3.2/§3.4: align, then the cosine test of rows of W·M against each release's carriers."""
    weight = model.classifier()[0][rows]
    suspect_feats = batched_features(model.features, paths)
    marker_cache: dict[str, np.ndarray] = {}
    results = []
    for release in releases:
        digest = release.marker["weights_sha256"]
        if digest not in marker_cache:
            marker = reload_marker(release.marker, request.marker_weights, device=request.options.device)
            marker_cache[digest] = batched_features(marker.features, paths)
        alignment = _align(request, marker_cache[digest], suspect_feats)
        test = cosine_test(weight @ alignment.matrix, _carriers(keys, release, len(classes)))
        results.append(build_release_result(release, classes, alignment, test))
    return results


def _carriers(keys: OwnerKeys, release: Release, n_classes: int) -> np.ndarray:
    carriers = derive_carriers(keys.master_secret, release.release_id, n_classes, release.feature_dim)
    if carrier_commitment(carriers) != release.carrier_commitment:
        raise AuditkitError(f"carriers of release {release.name!r} do not match its commitment; wrong --keys?")
    return carriers


def _queries(model: Any) -> int | None:
    """Images sent to a remote API so far (``None`` for a local model)."""
    return getattr(model, "queries", None)


def _lossgap_results(request: AuditRequest, registry: Registry, model: BlackBoxModel, releases: list[Release],
                     classes: list[str], rows: np.ndarray, keys: OwnerKeys, source: Path) -> list[dict[str, Any]]:
    """The black-box loss-gap rank test (``auditkit/audit/lossgap.py``) for each release."""
    results = []
    for release in releases:
        _carriers(keys, release, len(classes))  # checks the keys before any query
        marker = reload_marker(release.marker, request.marker_weights, device=request.options.device)
        with registry.session() as session:
            items = list(session.scalars(select(MarkedItem).where(MarkedItem.release_id == release.id)))
        before = _queries(model)
        result = loss_gap_test(model, marker.features, release, items, source, len(classes), rows, keys.master_secret,
                               request.loss_gap, device=marker.device)
        result["release"] = release_identity(release)
        result["queries"] = None if before is None else _queries(model) - before
        results.append(result)
    return results


def _distill_results(request: AuditRequest, model: BlackBoxModel, releases: list[Release], classes: list[str],
                     rows: np.ndarray, paths: list[Path], keys: OwnerKeys) -> list[dict[str, Any]]:
    """Distil the suspect into a student on vanilla images, then the white-box test on the student."""
    results = []
    for release in releases:
        marker = reload_marker(release.marker, request.marker_weights, device=request.options.device)
        before = _queries(model)
        student = distill(model, marker, paths, request.distill)
        inner = replace(request, no_align=False)
        result = _whitebox_results(inner, student.model, [release], classes, rows, paths, keys)[0]
        result["student"] = {"arch": request.distill.student_arch or "marker features + linear head",
                             "images": student.images, "agreement_with_suspect": student.agreement}
        result["queries"] = None if before is None else _queries(model) - before
        results.append(result)
    return results


def run_audit(registry: Registry, keys: OwnerKeys, request: AuditRequest) -> AuditOutcome:
    """Audit ``request.model`` against the requested releases and write the signed report."""
    if request.mode not in MODES:
        raise AuditkitError(f"--mode must be one of {', '.join(MODES)}")
    adapter = resolve_adapter_name(request.model, request.adapter)
    location = public_location(request.model) if adapter == "http" else request.model  # no user:password@ in reports
    model = load_model(request.model, request.options, adapter)
    white = isinstance(model, WhiteBoxModel)
    mode = request.mode if request.mode != "auto" else ("white-box" if white else "loss-gap")
    if request.mode == "auto" and not white:
        warnings.warn(f"{model.description} gives logits only: auditing it black-box with the loss-gap test "
                      "(--mode distill is the other black-box test)", stacklevel=2)
    if mode == "white-box" and not white:
        raise AuditkitError(f"{location} gives logits only; white-box audits need features and a classifier "
                            "(use --mode loss-gap or --mode distill)")
    started = datetime.now(timezone.utc)
    with registry.session() as session:
        dataset = get_dataset(session, request.dataset)
        releases = _releases(dataset, request.release, session)
        classes = list(dataset.classes)
        dataset_name = dataset.name
    rows = read_class_map(request.class_map, classes, model.num_classes)
    paths = vanilla_image_paths(registry, dataset, request.holdout)
    if mode == "loss-gap":
        results = _lossgap_results(request, registry, model, releases, classes, rows, keys, Path(dataset.source))
    else:
        largest = max(r.feature_dim for r in releases)
        default = max(2 * (largest + 1), 512) if mode == "white-box" else max(2 * (largest + 1), 2000)
        paths = choose(paths, request.align_images or default)
        collect = _whitebox_results if mode == "white-box" else _distill_results
        results = collect(request, model, releases, classes, rows, paths, keys)
    adjusted = holm_adjust([r["log10_p"] * math.log(10) for r in results])
    for result, log_adj in zip(results, adjusted):
        result["log10_p_holm"] = to_log10(float(log_adj))

    predicate: dict[str, Any] = {
        "dataset": dataset_name,
        "model": {"location": location, "sha256": model.digest, "adapter": adapter,
                  "description": model.description, "num_classes": model.num_classes,
                  "feature_dim": getattr(model, "feature_dim", None)},
        "mode": mode,
        "null_hypothesis": "the suspect model was not trained on the release: each carrier is uniform on the sphere "
                           "and independent of the model",
        "assumptions": ASSUMPTIONS[mode],
        "parameters": {"release": request.release, "vanilla_images": len(paths) if mode != "loss-gap" else None,
                       "holdout": str(request.holdout) if request.holdout else None, "no_align": request.no_align,
                       "class_map": rows.tolist(),
                       "loss_gap": asdict(request.loss_gap) if mode == "loss-gap" else None,
                       "distill": asdict(request.distill) if mode == "distill" else None},
        "results": results,
        "software": {"auditkit": __version__, "python": platform.python_version()},
        "started": started.isoformat(),
        "finished": datetime.now(timezone.utc).isoformat(),
    }
    subject = location if adapter == "http" else Path(request.model).name
    envelope = sign_statement(build_statement([{"name": subject, "digest": {"sha256": model.digest}}], predicate), keys.signing_key)
    report_path = request.out or Path(f"audit-{dataset_name}-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    data = write_envelope(report_path, envelope)
    html_path = None
    if request.html is not None:
        write_html(request.html, predicate)
        html_path = request.html
    with registry.session() as session:
        for release, result in zip(releases, results):
            session.add(Audit(
                release_id=release.id, model_digest=model.digest, model_location=location, adapter=adapter,
                mode=mode, log10_p=result["log10_p"], report_sha256=sha256_bytes(data), report_path=str(Path(report_path).resolve()),
            ))
    return AuditOutcome(predicate, Path(report_path), html_path)
