"""The ``auditkit`` command line: parse, call one library function, print.

No logic lives here that a Python user could not reach through the library; errors from the
library (:class:`~auditkit.errors.AuditkitError`) are printed on one line with a non-zero
exit code, and ``--verbose`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from auditkit import __version__
from auditkit.config import keys_dir as resolve_keys_dir
from auditkit.config import registry_url as resolve_registry_url
from auditkit.errors import AuditkitError

if TYPE_CHECKING:
    from auditkit.marking.optimize import MarkingParams

stdout = Console()
stderr = Console(stderr=True)


class _Group(TyperGroup):
    """Catches AuditkitError once for every subcommand and prints it on one line."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuditkitError as error:
            if ctx.obj and ctx.obj.get("verbose"):
                raise
            typer.echo(f"auditkit: error: {error}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    help="Mark image datasets with radioactive data and audit suspect models with signed p-values.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
dataset_app = typer.Typer(cls=_Group, help="Register and inspect datasets.", no_args_is_help=True)
release_app = typer.Typer(cls=_Group, help="Inspect marked releases.", no_args_is_help=True)
report_app = typer.Typer(cls=_Group, help="Verify and show signed audit reports.", no_args_is_help=True)
keys_app = typer.Typer(cls=_Group, help="Owner keys.", no_args_is_help=True)
adapters_app = typer.Typer(cls=_Group, help="Model adapters.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
app.add_typer(release_app, name="release")
app.add_typer(report_app, name="report")
app.add_typer(keys_app, name="keys")
app.add_typer(adapters_app, name="adapters")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"auditkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    registry: Annotated[
        Optional[str],
        typer.Option(help="SQLAlchemy URL or SQLite file of the registry [env AUDITKIT_REGISTRY; default ./registry.db]"),
    ] = None,
    keys: Annotated[
        Optional[Path],
        typer.Option(help="Owner key directory [env AUDITKIT_KEYS; default ~/.config/auditkit]"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """auditkit: radioactive data for dataset owners (Sablayrolles et al., ICML 2020)."""
    ctx.obj = {"registry": resolve_registry_url(registry), "keys": resolve_keys_dir(keys), "verbose": verbose}


def _open(ctx: typer.Context):  # type: ignore[no-untyped-def]
    from auditkit.registry.store import open_registry

    return open_registry(ctx.obj["registry"])


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@app.command()
def init(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Create the registry and the owner keys (master secret + Ed25519 signing key).

    Safe to run again: existing keys are kept, the registry is migrated to this version.

    Example: auditkit init --keys ./owner-keys --registry ./registry.db
    """
    from auditkit.owner import init_owner

    result = init_owner(ctx.obj["registry"], ctx.obj["keys"])
    if json_out:
        _print_json({"keys_created": result.keys_created, "fingerprint": result.fingerprint,
                     "keys_dir": str(result.keys_dir), "registry": result.registry_url})
        return
    state = "created" if result.keys_created else "kept existing"
    stdout.print(f"registry ready at {result.registry_url}")
    stdout.print(f"owner keys {state} in {result.keys_dir} (fingerprint {result.fingerprint[:16]}…)")
    if result.keys_created:
        stdout.print("[bold]Back up the key directory: without master.secret no audit of your releases is possible.[/]")


@dataset_app.command("add")
def dataset_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the dataset in the registry.")],
    source: Annotated[Path, typer.Option(help="ImageFolder tree: DIR/<class>/<image>.")],
    json_out: JsonFlag = False,
) -> None:
    """Register an ImageFolder tree as a dataset.

    Example: auditkit dataset add flowers --source ./flowers
    """
    from auditkit.datasets import add_dataset, dataset_summary

    registry = _open(ctx)
    dataset = add_dataset(registry, name, source)
    if json_out:
        _print_json(dataset_summary(dataset) | {"releases": []})
    else:
        stdout.print(f"dataset {dataset.name}: {dataset.image_count} images in {len(dataset.classes)} classes")


@dataset_app.command("list")
def dataset_list(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """List registered datasets.

    Example: auditkit dataset list --json
    """
    from auditkit.datasets import dataset_summary, list_datasets

    datasets = list_datasets(_open(ctx))
    if json_out:
        _print_json([dataset_summary(d) for d in datasets])
        return
    table = Table("name", "images", "classes", "releases", "source")
    for d in datasets:
        table.add_row(d.name, str(d.image_count), str(len(d.classes)), str(len(d.releases)), d.source)
    stdout.print(table)


@dataset_app.command("show")
def dataset_show(ctx: typer.Context, name: str, json_out: JsonFlag = False) -> None:
    """Show one dataset: classes, counts, releases.

    Example: auditkit dataset show flowers --json
    """
    from auditkit.datasets import dataset_summary, get_dataset

    with _open(ctx).session() as session:
        summary = dataset_summary(get_dataset(session, name))
    if json_out:
        _print_json(summary)
        return
    for key, value in summary.items():
        stdout.print(f"[bold]{key}[/]: {value}")


class _Progress:
    """A rich progress bar with rate and ETA, fed by library progress callbacks."""

    def __init__(self, description: str, unit: str = "images") -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=stderr, transient=False,
        )
        self._description, self._unit, self._task = description, unit, None
        self._start = 0.0

    def __enter__(self) -> "_Progress":
        import time

        self._start = time.perf_counter()
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def __call__(self, done: int, total: int) -> None:
        import time

        if self._task is None:
            self._task = self._progress.add_task(self._description, total=total, rate="")
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        self._progress.update(self._task, completed=done, total=total, rate=f"{done / elapsed:.1f} {self._unit}/s")


def _marking_params(radius: float, psnr: float, steps: int, augment: str, momentum: float) -> MarkingParams:
    """The MarkingParams of ``mark`` and ``plan``, with one-line errors for values out of range."""
    from auditkit.marking.augment import AUGMENTATIONS
    from auditkit.marking.optimize import MarkingParams

    if augment not in AUGMENTATIONS:
        raise AuditkitError(f"--augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
    if steps < 1 or radius <= 0:
        raise AuditkitError("--steps must be >= 1 and --radius > 0")
    if not 0.0 <= momentum < 1.0:
        raise AuditkitError(f"--momentum must be in [0, 1), got {momentum:g}")
    return MarkingParams(radius=radius, psnr=psnr, steps=steps, augment=augment, momentum=momentum)


@app.command()
def mark(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered dataset to mark.")],
    out: Annotated[Path, typer.Option(help="Directory of the new release (must be new or empty).")],
    fraction: Annotated[float, typer.Option(help="Fraction q of each class to mark.")] = 0.1,
    marker: Annotated[str, typer.Option(help="Marking network architecture: torchvision name, small_resnet..., or timm:NAME.")] = "resnet18",
    marker_weights: Annotated[Optional[Path], typer.Option(help="Weights of the marking network (state dict, checkpoint, safetensors, TorchScript).")] = None,
    radius: Annotated[float, typer.Option(help="L-infinity bound R in pixel units (0-255).")] = 10.0,
    psnr: Annotated[float, typer.Option(help="PSNR floor of every marked image in dB (0: none, the paper's unconstrained recipe).")] = 42.0,
    steps: Annotated[int, typer.Option(help="Optimisation steps per image.")] = 40,
    momentum: Annotated[float, typer.Option(help="Momentum of the normalised-gradient steps, 0 <= m < 1 (docs/performance.md: 35 steps at 0.5 match 40 at 0).")] = 0.0,
    augment: Annotated[str, typer.Option(help="Augmentations F(s, x) in eq. 5: random (resized crop + flip), shift (translation + flip, for small images), center or none.")] = "random",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images optimised together.")] = 32,
    release: Annotated[Optional[str], typer.Option(help="Release name (default r1, r2, ...).")] = None,
    release_id: Annotated[Optional[str], typer.Option(help="Public release id, 32 hex digits (default: random). Carriers and selection derive from the master secret and this id, so it reproduces a release; never reuse one.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted release in --out.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Copy unreadable images unmarked instead of stopping.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Mark a release of a dataset with radioactive data (paper eq. 3-5).

    Example: auditkit mark flowers --out ./flowers-r1 --fraction 0.1 --marker resnet18 --marker-weights resnet18.pt
    """
    from auditkit.marking.marker import load_marker
    from auditkit.marking.release import MarkRequest, mark_release
    from auditkit.owner import owner_keys_for

    params = _marking_params(radius, psnr, steps, augment, momentum)
    if batch_size < 1:
        raise AuditkitError("--batch-size must be >= 1")
    registry = _open(ctx)
    keys = owner_keys_for(registry, ctx.obj["keys"])
    model = load_marker(marker, marker_weights, device=device)
    request = MarkRequest(
        dataset=name, out_dir=out, marker_arch=marker, marker_weights=marker_weights, fraction=fraction,
        params=params, batch_size=batch_size, release_name=release, release_id=release_id, resume=resume, skip_bad=skip_bad,
    )
    with _Progress("marking", "files") as progress:
        summary = mark_release(registry, keys, model, request, progress=progress)
    if json_out:
        _print_json(summary.to_dict())
        return
    stdout.print(
        f"release [bold]{summary.release}[/] written to {summary.out_dir}: {summary.marked} images marked, "
        f"{summary.copied} files copied"
    )
    stdout.print(
        f"PSNR mean {summary.psnr_mean:.2f} dB (min {summary.psnr_min:.2f}); mean feature shift along the carrier "
        f"{summary.shift_mean:.4f}; {summary.images_per_second:.2f} marked images/s"
    )
    if summary.skipped_bad:
        stdout.print(f"[yellow]{len(summary.skipped_bad)} unreadable images copied unmarked:[/] {', '.join(summary.skipped_bad)}")


@app.command()
def plan(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered dataset you intend to mark.")],
    fraction: Annotated[list[float], typer.Option(help="Fraction q of each class to mark; repeat to compare several.")],
    marker: Annotated[str, typer.Option(help="Marking network architecture (as for mark).")] = "resnet18",
    marker_weights: Annotated[Optional[Path], typer.Option(help="Weights of the marking network.")] = None,
    radius: Annotated[float, typer.Option(help="L-infinity bound R in pixel units (as for mark).")] = 10.0,
    psnr: Annotated[float, typer.Option(help="PSNR floor in dB (as for mark).")] = 42.0,
    steps: Annotated[int, typer.Option(help="Optimisation steps per image (as for mark).")] = 40,
    momentum: Annotated[float, typer.Option(help="Momentum of the marking steps (as for mark).")] = 0.0,
    augment: Annotated[str, typer.Option(help="random, shift, center or none (as for mark).")] = "random",
    pilots: Annotated[int, typer.Option(help="Images per class marked for real to measure the feature shifts.")] = 8,
    images: Annotated[int, typer.Option(help="Vanilla images used to simulate the release.")] = 5000,
    draws: Annotated[int, typer.Option(help="Independent simulations (fresh carriers and pilots).")] = 3,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    json_out: JsonFlag = False,
) -> None:
    """Predict, before release, the p-value of the frozen-features test (paper §5.1) for each --fraction.

    Example: auditkit plan flowers --fraction 0.05 --fraction 0.1 --marker resnet18 --marker-weights resnet18.pt
    """
    from auditkit.marking.marker import load_marker
    from auditkit.planning import PlanRequest, plan_release

    params = _marking_params(radius, psnr, steps, augment, momentum)
    if pilots < 1 or images < 2 or draws < 1:
        raise AuditkitError("--pilots and --draws must be >= 1 and --images >= 2")
    registry = _open(ctx)
    model = load_marker(marker, marker_weights, device=device)
    request = PlanRequest(dataset=name, fractions=fraction, params=params,
                          pilot_per_class=pilots, images=images, draws=draws)
    with _Progress("simulating", "draws") as progress:
        result = plan_release(registry, model, request, progress=progress)
    if json_out:
        _print_json({"classes": result.classes, "dim": result.dim, "images": result.images, "pilot_psnr": result.pilot_psnr,
                     "pilot_shift": result.pilot_shift, "shift_ratio": result.shift_ratio,
                     "rows": [{"fraction": r.fraction, "log10_p": r.log10_p, "median_log10_p": r.median} for r in result.rows]})
        return
    stdout.print(f"{result.classes} classes, marker d = {result.dim}, {result.images} vanilla images; pilot marks: "
                 f"PSNR {result.pilot_psnr:.1f} dB, shift along the carrier {result.pilot_shift:.3f} "
                 f"({result.shift_ratio:.2f} of the class-mean spread)")
    table = Table("q", "expected log10 p (median)", "range over draws", title="frozen-features threat, predicted")
    for row in result.rows:
        table.add_row(f"{row.fraction:g}", f"{row.median:.2f}", f"{min(row.log10_p):.2f} .. {max(row.log10_p):.2f}")
    stdout.print(table)
    stdout.print("A prediction from simulated marks (docs/results.md compares it with measured releases); "
                 "training from scratch gives weaker evidence than frozen features.")


def _input_spec(mean: Optional[str], std: Optional[str]):  # type: ignore[no-untyped-def]
    from adapters import InputSpec

    if mean is None and std is None:
        return None

    def triple(text: Optional[str], default: tuple[float, float, float], flag: str) -> tuple[float, float, float]:
        if text is None:
            return default
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != 3 or (flag == "--std" and min(values) <= 0):
            raise AuditkitError(f"{flag} takes three numbers R,G,B (e.g. 0.5,0.5,0.5), got {text!r}")
        return values  # type: ignore[return-value]

    return InputSpec(mean=triple(mean, InputSpec().mean, "--mean"), std=triple(std, InputSpec().std, "--std"))


@app.command()
def audit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered dataset whose releases to test.")],
    model: Annotated[str, typer.Option(help="Suspect model file (state dict, checkpoint, TorchScript, ONNX, ...) or an http(s):// logit API.")],
    arch: Annotated[Optional[str], typer.Option(help="Architecture of the suspect (e.g. resnet18).")] = None,
    adapter: Annotated[str, typer.Option(help="Model adapter: auto (by file type or URL), torch, timm, onnx, http or a plugin (`auditkit adapters list`).")] = "auto",
    release: Annotated[str, typer.Option(help="Release name, or 'all' (Holm-adjusted).")] = "all",
    mode: Annotated[str, typer.Option(help="auto (white-box when possible, else loss-gap), white-box, loss-gap or distill.")] = "auto",
    holdout: Annotated[Optional[Path], typer.Option(help="Vanilla images for the alignment (default: unmarked source images).")] = None,
    align_images: Annotated[Optional[int], typer.Option(help="Number of alignment images (default max(2(d+1), 512)).")] = None,
    no_align: Annotated[bool, typer.Option("--no-align", help="Compare the classifier with the carriers directly.")] = False,
    class_map: Annotated[Optional[Path], typer.Option(help='JSON {"dataset class": suspect index} for other class orders/supersets.')] = None,
    classifier_layer: Annotated[Optional[str], typer.Option(help="Name of the final linear layer if not the last one.")] = None,
    marker_weights: Annotated[Optional[Path], typer.Option(help="Marking network weights, if moved since marking.")] = None,
    unsafe_load: Annotated[bool, typer.Option("--unsafe-load", help="Allow pickled modules (runs code from the file!).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    controls: Annotated[int, typer.Option(help="loss-gap: control carrier sets K (per-class p-values in steps of 1/(K+1)).")] = 39,
    loss_gap_images: Annotated[int, typer.Option(help="loss-gap: released images per class to query (x (K+1) queries).")] = 5,
    student: Annotated[Optional[str], typer.Option(help="distill: student architecture (default: the marker's frozen features + a linear head).")] = None,
    distill_epochs: Annotated[int, typer.Option(help="distill: epochs when --student is a network.")] = 10,
    header: Annotated[Optional[list[str]], typer.Option(help="http: request header 'Name: value' (a last word env:VAR reads $VAR: 'Authorization: Bearer env:TOKEN'); repeatable.")] = None,
    timeout: Annotated[float, typer.Option(help="http: seconds per request.")] = 30.0,
    retries: Annotated[int, typer.Option(help="http: retries on 429/5xx/timeouts, with exponential backoff.")] = 5,
    rate: Annotated[float, typer.Option(help="http: at most this many requests per second (0: no limit).")] = 0.0,
    max_queries: Annotated[Optional[int], typer.Option(help="http: hard budget of images sent.")] = None,
    cache: Annotated[Path, typer.Option(help="http: on-disk cache of answers.")] = Path(".auditkit-cache"),
    request_template: Annotated[Optional[str], typer.Option(help='http: JSON request body; "$images" is the list of base64 PNGs, [{..."$image"...}] repeats per image.')] = None,
    response_path: Annotated[Optional[str], typer.Option(help="http: dotted path to the score rows in the answer, e.g. predictions or data.*.scores.")] = None,
    scores: Annotated[Optional[str], typer.Option(help="http: the answer holds logits or probs (default: its key says).")] = None,
    mean: Annotated[Optional[str], typer.Option(help="Input normalisation mean R,G,B (default: the adapter's, ImageNet for torch/onnx).")] = None,
    std: Annotated[Optional[str], typer.Option(help="Input normalisation std R,G,B.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Signed JSON report path.")] = None,
    html: Annotated[Optional[Path], typer.Option(help="Also write an HTML page with plots.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Audit a suspect model against a dataset's releases and write a signed report.

    Examples: auditkit audit flowers --model suspect.pt --arch resnet18 --out report.json --html report.html;
    auditkit audit flowers --model https://api.example.com/v1/predict --header "Authorization: Bearer env:API_TOKEN" --mode distill
    """
    from adapters import AdapterOptions
    from auditkit.audit.distill import DistillParams
    from auditkit.audit.lossgap import LossGapParams
    from auditkit.audit.service import AuditRequest, run_audit
    from auditkit.owner import owner_keys_for
    from auditkit.stats import format_pvalue

    registry = _open(ctx)
    keys = owner_keys_for(registry, ctx.obj["keys"])
    request = AuditRequest(
        dataset=name, model=model, adapter=adapter,
        options=AdapterOptions(
            arch=arch, classifier_layer=classifier_layer, unsafe_load=unsafe_load, device=device, input_spec=_input_spec(mean, std),
            extra={"header": "\n".join(header or []), "timeout": str(timeout), "retries": str(retries), "rate": str(rate),
                   "max_queries": str(max_queries or ""), "cache": str(cache), "request_template": request_template or "",
                   "response_path": response_path or "", "scores": scores or ""},
        ),
        release=release, mode=mode, holdout=holdout, align_images=align_images, no_align=no_align,
        class_map=class_map, marker_weights=marker_weights, out=out, html=html,
        loss_gap=LossGapParams(controls=controls, images_per_class=loss_gap_images),
        distill=DistillParams(student_arch=student, epochs=distill_epochs),
    )
    with stderr.status("auditing"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        outcome = run_audit(registry, keys, request)
    for warning in caught:
        typer.echo(f"auditkit: warning: {warning.message}", err=True)
    if json_out:
        _print_json({"report": str(outcome.report_path), "html": str(outcome.html_path) if outcome.html_path else None,
                     "results": outcome.results})
        return
    table = Table("release", "mode", "log10 p", "p", "Holm log10 p", "effect", "queries")
    for r in outcome.results:
        effect = (f"mean cos {r['mean_cosine']:+.4f} (z {r['z_score']:.1f})" if "mean_cosine" in r
                  else f"loss gap {r['loss_gap_mean']:+.4f} ({r['effect_size']:+.2f} control SDs)")
        table.add_row(r["release"]["name"], outcome.predicate["mode"], f"{r['log10_p']:.3f}", format_pvalue(r["log10_p"]),
                      f"{r['log10_p_holm']:.3f}", effect, str(r.get("queries") or "-"))
    stdout.print(table)
    stdout.print(f"signed report: {outcome.report_path}" + (f"; HTML: {outcome.html_path}" if outcome.html_path else ""))


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Throwaway directory for the demo's registry, keys and files.")] = Path("demo"),
    data: Annotated[str, typer.Option(help="auto (Fashion-MNIST when installed, else generated), fashion-mnist or generated.")] = "auto",
) -> None:
    """Run the whole owner workflow on small built-in data: mark, train a suspect and a clean model, audit both.

    Example: auditkit demo --dir ./demo
    """
    import time

    from auditkit.demo import DemoConfig, run_demo
    from auditkit.stats import format_pvalue

    started = time.perf_counter()
    bars: list[_Progress] = []

    def progress(description: str) -> _Progress:
        if bars:
            bars.pop().__exit__(None, None, None)
        bar = _Progress(description, "steps").__enter__()
        bars.append(bar)
        return bar

    def say(line: str) -> None:
        if bars:
            bars.pop().__exit__(None, None, None)
        stdout.print(line)

    result = run_demo(directory, DemoConfig(data=data), say, progress)
    stdout.print(
        f"6. Audits: the suspect gets p = {format_pvalue(result.suspect_log10_p)} (log10 p = {result.suspect_log10_p:.2f}): "
        f"{'[bold green]detected[/]' if result.suspect_log10_p <= -5 else '[bold red]not detected[/]'}; "
        f"the clean model gets p = {format_pvalue(result.clean_log10_p)}: "
        f"{'[bold green]not detected[/]' if result.clean_log10_p > -2 else '[bold red]flagged[/]'}."
    )
    stdout.print(f"   Signed reports: {result.reports['suspect']}, {result.reports['clean']} "
                 f"(check with `auditkit --keys {result.directory / 'keys'} report verify FILE`); "
                 f"HTML pages beside them. Took {time.perf_counter() - started:.0f} s.")


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="Model file to serve.")],
    arch: Annotated[Optional[str], typer.Option(help="Architecture (as for audit).")] = None,
    adapter: Annotated[str, typer.Option(help="Adapter used to load the model.")] = "auto",
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 8765,
    probs: Annotated[bool, typer.Option("--probs", help="Answer probabilities instead of logits.")] = False,
    unsafe_load: Annotated[bool, typer.Option("--unsafe-load", help="Allow pickled modules (runs code from the file!).")] = False,
) -> None:
    """Serve a model as a logit API on 127.0.0.1 (the http adapter's default schema).

    Example: auditkit serve suspect.pt --arch resnet18 --port 8765
    """
    from adapters import AdapterOptions, load_model
    from auditkit.serve import make_server

    loaded = load_model(model, AdapterOptions(arch=arch, unsafe_load=unsafe_load, device="cpu"), adapter)
    server = make_server(loaded, "127.0.0.1", port, probabilities=probs)
    typer.echo(f"serving {loaded.description} at http://127.0.0.1:{server.server_address[1]}/predict", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@release_app.command("list")
def release_list(ctx: typer.Context, name: str, json_out: JsonFlag = False) -> None:
    """List the releases of a dataset.

    Example: auditkit release list flowers
    """
    from auditkit.datasets import get_dataset
    from auditkit.releases import release_summary

    with _open(ctx).session() as session:
        rows = [release_summary(r) for r in get_dataset(session, name).releases]
    if json_out:
        _print_json(rows)
        return
    table = Table("release", "status", "marked", "fraction", "PSNR", "marker", "out")
    for r in rows:
        psnr = f"{r['psnr_mean']:.2f}" if r["psnr_mean"] is not None else "-"
        table.add_row(r["name"], r["status"], str(r["marked_count"]), f"{r['fraction']:g}", psnr, r["marker"]["arch"], r["out_dir"])
    stdout.print(table)


@release_app.command("show")
def release_show(
    ctx: typer.Context,
    name: str,
    release: str,
    items: Annotated[bool, typer.Option("--items", help="Also list the marked files (owner-only information).")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Show one release: marker, parameters, carrier commitment, mark statistics.

    Example: auditkit release show flowers r1 --json
    """
    from auditkit.datasets import get_dataset, get_release
    from auditkit.releases import release_summary

    with _open(ctx).session() as session:
        row = get_release(session, get_dataset(session, name), release)
        summary = release_summary(row, with_items=items)
    if json_out:
        _print_json(summary)
        return
    for key, value in summary.items():
        stdout.print(f"[bold]{key}[/]: {value}")


@adapters_app.command("list")
def adapters_list(json_out: JsonFlag = False) -> None:
    """List the model adapters: built-ins and plugins (entry-point group auditkit.adapters).

    Example: auditkit adapters list
    """
    from adapters import available_adapters

    found = available_adapters()
    if json_out:
        _print_json(found)
        return
    table = Table("adapter", "source")
    for name, origin in found.items():
        table.add_row(name, origin)
    stdout.print(table)


@keys_app.command("export-public")
def keys_export_public(
    ctx: typer.Context,
    out: Annotated[Optional[Path], typer.Option(help="Write the PEM here instead of printing it.")] = None,
) -> None:
    """Export the owner's public key (PEM) for third parties who verify reports.

    Example: auditkit keys export-public --out owner.pub
    """
    from auditkit.fsutil import atomic_write_bytes
    from auditkit.keys import load_keys

    pem = load_keys(ctx.obj["keys"]).public_pem
    if out is None:
        typer.echo(pem, nl=False)
    else:
        atomic_write_bytes(out, pem.encode())
        stdout.print(f"public key written to {out}")


def _verification_key(ctx: typer.Context, public_key: Optional[Path]):  # type: ignore[no-untyped-def]
    from auditkit.keys import PUBLIC_FILE, load_public_key

    if public_key is not None:
        return load_public_key(public_key)
    own = ctx.obj["keys"] / PUBLIC_FILE
    if not own.exists():
        raise AuditkitError("no public key to verify with; pass --public-key FILE (the signer's exported key)")
    return load_public_key(own)


@report_app.command("verify")
def report_verify(
    ctx: typer.Context,
    report: Path,
    public_key: Annotated[Optional[Path], typer.Option(help="Signer's public key (PEM); default: your own.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Verify a signed report offline; exits non-zero on any tampering.

    Example: auditkit report verify audit.json --public-key owner.pub
    """
    from auditkit.evidence import read_envelope, verify_envelope

    statement = verify_envelope(read_envelope(report), _verification_key(ctx, public_key))
    predicate = statement["predicate"]
    if json_out:
        _print_json({"verified": True, "statement": statement})
        return
    stdout.print(f"[green]verified[/]: {report} is signed by the owner key and unmodified")
    if "log10_p" in predicate:
        stdout.print(f"release {predicate.get('release', {}).get('name')}: log10 p = {predicate['log10_p']:.3f}")


@report_app.command("show")
def report_show(ctx: typer.Context, report: Path, json_out: JsonFlag = False) -> None:
    """Print a report readably (without verifying it; use `report verify` for that).

    Example: auditkit report show audit.json
    """
    from auditkit.evidence import decode_statement, read_envelope
    from auditkit.report_view import render_statement

    statement = decode_statement(read_envelope(report))
    if json_out:
        _print_json(statement)
    else:
        render_statement(stdout, statement)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
