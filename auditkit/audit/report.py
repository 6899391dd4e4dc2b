"""The content of an audit report (the in-toto predicate) and its HTML page."""

from __future__ import annotations

import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from auditkit.audit.align import Alignment
from auditkit.audit.whitebox import CosineTestResult
from auditkit.fsutil import atomic_write_bytes
from auditkit.registry.models import Release
from auditkit.stats import format_pvalue

ASSUMPTIONS_WHITE_BOX = [
    "The carriers were drawn uniformly on the unit sphere, independently of the suspect model "
    "(they are derived from the owner's secret; the carrier commitment was stored when the release was made).",
    "The alignment images are vanilla (never marked) and their choice does not depend on the carriers.",
    "Under H0 the per-class cosines are independent (independent carriers), so Fisher's combination is exact.",
    "A small p-value says the model's classifier is aligned with this release's carriers; it does not say how "
    "much of the release was used.",
]


ASSUMPTIONS_LOSS_GAP = [
    "The release's carriers and the control carriers are i.i.d. uniform on the sphere and independent of the suspect "
    "(all derived from the owner's secret; controls were never released).",
    "The released and control sets are produced by the same deterministic marking procedure from the same originals "
    "(the released set is re-marked at audit time; 'released_reproduced' counts how many match the released bytes).",
    "Per-class p-values are ranks among K+1 exchangeable losses (multiples of 1/(K+1)); classes have independent "
    "carriers, so Fisher's combination of these super-uniform p-values is valid and conservative.",
    "The API answers deterministically and independently of which images were asked before.",
]

ASSUMPTIONS_DISTILL = [
    "The suspect was queried on vanilla (never marked) images only, chosen independently of the carriers, so the "
    "student is independent of the carriers under H0.",
    *ASSUMPTIONS_WHITE_BOX[:1],
    *ASSUMPTIONS_WHITE_BOX[2:],
]

ASSUMPTIONS = {"white-box": ASSUMPTIONS_WHITE_BOX, "loss-gap": ASSUMPTIONS_LOSS_GAP, "distill": ASSUMPTIONS_DISTILL}


def release_identity(release: Release) -> dict[str, Any]:
    """What a report says about the release tested (never its carriers)."""
    return {"name": release.name, "release_id": release.release_id, "carrier_commitment": release.carrier_commitment,
            "fraction": release.fraction, "marker": {k: v for k, v in release.marker.items() if k != "weights_path"},
            "manifest_sha256": release.manifest_sha256}


def build_release_result(release: Release, classes: list[str], alignment: Alignment, test: CosineTestResult) -> dict[str, Any]:
    """The part of the report about one release (JSON-ready; log-p values in log10)."""
    return {
        "release": release_identity(release),
        "alignment": alignment.summary(),
        "statistic": "Fisher combination of per-class one-sided cosine tests (paper §3.1-3.2)",
        "dim": test.dim,
        "per_class": [
            {"class": name, "cosine": float(c), "log10_p": float(lp) / math.log(10)}
            for name, c, lp in zip(classes, test.cosines, test.log_pvalues)
        ],
        "mean_cosine": test.mean_cosine,
        "z_score": test.z_score,
        "log10_p": test.log10_pvalue,
    }


def _verdict(log10_p: float) -> str:
    if log10_p <= -5:
        return "strong evidence that the model was trained on this release"
    if log10_p <= -2:
        return "evidence that the model was trained on this release"
    return "no significant evidence that the model was trained on this release"


def _cosine_plot_svg(result: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.special import betaln

    dim = int(result["dim"])
    cosines = np.array([row["cosine"] for row in result["per_class"]])
    span = max(0.05, float(np.abs(cosines).max()) * 1.2, 4 / math.sqrt(dim))
    grid = np.linspace(-min(span, 1.0), min(span, 1.0), 400)
    # density of the cosine of a uniform unit vector: (1 - c^2)^((d-3)/2) / B((d-1)/2, 1/2)
    log_density = (dim - 3) / 2 * np.log1p(-grid**2) - betaln((dim - 1) / 2, 0.5)
    figure, axis = plt.subplots(figsize=(7, 3))
    axis.plot(grid, np.exp(log_density), color="0.3", label=f"null density (d={dim})")
    axis.vlines(cosines, 0, np.exp(log_density).max() * 0.25, color="tab:red", label="per-class cosines")
    axis.set_xlabel("cosine(row of W·M, carrier)")
    axis.set_yticks([])
    axis.legend(loc="upper left", frameon=False)
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def render_html(predicate: dict[str, Any]) -> str:
    """A self-contained page: verdict, assumptions, per-class table and plot per release."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>auditkit audit of {html.escape(predicate['model']['location'])}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:2px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}.verdict{font-size:1.3em}</style></head><body>",
        f"<h1>Audit of <code>{html.escape(predicate['model']['location'])}</code></h1>",
        f"<p>Dataset <b>{html.escape(predicate['dataset'])}</b>; model sha256 <code>{predicate['model']['sha256']}</code>; "
        f"mode {html.escape(predicate['mode'])}; auditkit {html.escape(predicate['software']['auditkit'])}; {html.escape(predicate['finished'])}.</p>",
    ]
    for result in predicate["results"]:
        log10_p = result["log10_p"]
        if "alignment" not in result:  # loss-gap
            parts += [
                f"<h2>Release {html.escape(result['release']['name'])}</h2>",
                f"<p class='verdict'>p = {html.escape(format_pvalue(log10_p))} (log10 p = {log10_p:.3f}; Holm-adjusted "
                f"{result['log10_p_holm']:.3f}; smallest attainable {result['min_attainable_log10_p']:.2f}): "
                f"<b>{_verdict(result['log10_p_holm'])}</b>.</p>",
                f"<p>{html.escape(result['statistic'])}; {result['images']} images, {result['queries']} queries; mean loss "
                f"gap (controls − released) {result['loss_gap_mean']:.4f}, {result['effect_size']:+.2f} control SDs per class.</p>",
                "<table><tr><th>class</th><th>released loss</th><th>control loss</th><th>log10 p</th></tr>",
                *(f"<tr><td>{row['class_index']}</td><td>{row['released_loss']:.4f}</td><td>{row['control_loss_mean']:.4f}</td>"
                  f"<td>{row['log10_p']:.3f}</td></tr>" for row in result["per_class"]),
                "</table>",
            ]
            continue
        parts += [
            f"<h2>Release {html.escape(result['release']['name'])}</h2>",
            f"<p class='verdict'>p = {html.escape(format_pvalue(log10_p))} (log10 p = {log10_p:.3f}; Holm-adjusted "
            f"{result['log10_p_holm']:.3f}): <b>{_verdict(result['log10_p_holm'])}</b>.</p>",
            f"<p>Mean cosine {result['mean_cosine']:.4f} (z = {result['z_score']:.2f}); alignment on "
            f"{result['alignment']['n_images']} vanilla images, relative residual {result['alignment']['relative_residual']:.3f}"
            f"{' (identity: the suspect uses the marker features)' if result['alignment']['identity'] else ''}.</p>",
            _cosine_plot_svg(result),
            "<table><tr><th>class</th><th>cosine</th><th>log10 p</th></tr>",
            *(f"<tr><td>{html.escape(row['class'])}</td><td>{row['cosine']:+.4f}</td><td>{row['log10_p']:.3f}</td></tr>"
              for row in result["per_class"]),
            "</table>",
        ]
    parts += [
        "<h2>What this p-value means</h2>",
        f"<p>Null hypothesis: {html.escape(predicate['null_hypothesis'])}. The p-value is the probability, under that "
        "hypothesis, of classifier/carrier alignment at least as strong as observed. It is exact (not an approximation) "
        "under these assumptions:</p><ul>",
        *(f"<li>{html.escape(a)}</li>" for a in predicate["assumptions"]),
        "</ul><p>The JSON report is signed (DSSE, Ed25519); check it with <code>auditkit report verify</code>.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_html(path: Path, predicate: dict[str, Any]) -> None:
    atomic_write_bytes(Path(path), render_html(predicate).encode())
