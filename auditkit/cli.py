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
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from auditkit import __version__
from auditkit.config import keys_dir as resolve_keys_dir
from auditkit.config import registry_url as resolve_registry_url
from auditkit.errors import AuditkitError

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
    augment: Annotated[str, typer.Option(help="Augmentations F(s, x) in eq. 5: random, center or none.")] = "random",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images optimised together.")] = 32,
    release: Annotated[Optional[str], typer.Option(help="Release name (default r1, r2, ...).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted release in --out.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Copy unreadable images unmarked instead of stopping.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Mark a release of a dataset with radioactive data (paper eq. 3-5).

    Example: auditkit mark flowers --out ./flowers-r1 --fraction 0.1 --marker resnet18 --marker-weights resnet18.pt
    """
    from auditkit.marking.augment import AUGMENTATIONS
    from auditkit.marking.marker import load_marker
    from auditkit.marking.optimize import MarkingParams
    from auditkit.marking.release import MarkRequest, mark_release
    from auditkit.owner import owner_keys_for

    if augment not in AUGMENTATIONS:
        raise AuditkitError(f"--augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
    if steps < 1 or batch_size < 1 or radius <= 0:
        raise AuditkitError("--steps and --batch-size must be >= 1 and --radius > 0")
    registry = _open(ctx)
    keys = owner_keys_for(registry, ctx.obj["keys"])
    model = load_marker(marker, marker_weights, device=device)
    request = MarkRequest(
        dataset=name, out_dir=out, marker_arch=marker, marker_weights=marker_weights, fraction=fraction,
        params=MarkingParams(radius=radius, psnr=psnr, steps=steps, augment=augment),
        batch_size=batch_size, release_name=release, resume=resume, skip_bad=skip_bad,
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
    model: Annotated[str, typer.Option(help="Suspect model file (state dict, checkpoint, TorchScript, ...).")],
    arch: Annotated[Optional[str], typer.Option(help="Architecture of the suspect (e.g. resnet18).")] = None,
    adapter: Annotated[str, typer.Option(help="Model adapter: auto (by file type), torch, timm, onnx or a plugin (`auditkit adapters list`).")] = "auto",
    release: Annotated[str, typer.Option(help="Release name, or 'all' (Holm-adjusted).")] = "all",
    mode: Annotated[str, typer.Option(help="auto or white-box.")] = "auto",
    holdout: Annotated[Optional[Path], typer.Option(help="Vanilla images for the alignment (default: unmarked source images).")] = None,
    align_images: Annotated[Optional[int], typer.Option(help="Number of alignment images (default max(2(d+1), 512)).")] = None,
    no_align: Annotated[bool, typer.Option("--no-align", help="Compare the classifier with the carriers directly.")] = False,
    class_map: Annotated[Optional[Path], typer.Option(help='JSON {"dataset class": suspect index} for other class orders/supersets.')] = None,
    classifier_layer: Annotated[Optional[str], typer.Option(help="Name of the final linear layer if not the last one.")] = None,
    marker_weights: Annotated[Optional[Path], typer.Option(help="Marking network weights, if moved since marking.")] = None,
    unsafe_load: Annotated[bool, typer.Option("--unsafe-load", help="Allow pickled modules (runs code from the file!).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    mean: Annotated[Optional[str], typer.Option(help="Input normalisation mean R,G,B (default: the adapter's, ImageNet for torch/onnx).")] = None,
    std: Annotated[Optional[str], typer.Option(help="Input normalisation std R,G,B.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Signed JSON report path.")] = None,
    html: Annotated[Optional[Path], typer.Option(help="Also write an HTML page with plots.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Audit a suspect model against a dataset's releases and write a signed report.

    Example: auditkit audit flowers --model suspect.pt --arch resnet18 --out report.json --html report.html
    """
    from adapters import AdapterOptions
    from auditkit.audit.service import AuditRequest, run_audit
    from auditkit.owner import owner_keys_for
    from auditkit.stats import format_pvalue

    registry = _open(ctx)
    keys = owner_keys_for(registry, ctx.obj["keys"])
    request = AuditRequest(
        dataset=name, model=model, adapter=adapter,
        options=AdapterOptions(arch=arch, classifier_layer=classifier_layer, unsafe_load=unsafe_load, device=device,
                               input_spec=_input_spec(mean, std)),
        release=release, mode=mode, holdout=holdout, align_images=align_images, no_align=no_align,
        class_map=class_map, marker_weights=marker_weights, out=out, html=html,
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
    table = Table("release", "log10 p", "p", "Holm log10 p", "mean cos", "z", "align resid.")
    for r in outcome.results:
        table.add_row(r["release"]["name"], f"{r['log10_p']:.3f}", format_pvalue(r["log10_p"]), f"{r['log10_p_holm']:.3f}",
                      f"{r['mean_cosine']:+.4f}", f"{r['z_score']:.2f}", f"{r['alignment']['relative_residual']:.3f}")
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
