"""`auditkit audit` end to end through the real CLI: a release of generated images, suspects
trained on it (frozen features, mixed features needing alignment, from scratch), clean models,
state-dict / TorchScript / pickled-module files, signed reports and HTML pages."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from auditkit.threats import frozen_features_suspect, load_image_folder, mixed_features_suspect, scratch_suspect
from conftest import fixed_draw, run_cli, shapes_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, trained_marker: dict) -> dict:
    import os

    root = tmp_path_factory.mktemp("audit")
    env = dict(os.environ, AUDITKIT_REGISTRY=f"sqlite:///{root / 'registry.db'}", AUDITKIT_KEYS=str(root / "keys"))
    source = shapes_folder(root / "source", per_class=300, size=32)
    run_cli("init", env=env)
    draw = fixed_draw(root / "keys", "audit scenario")
    run_cli("dataset", "add", "shapes", "--source", str(source), env=env)
    release = root / "release"
    # marks at 26 dB (L-inf 16): at 30 dB this small d = 64 marker gives log10 p between -3 and -7.5 from
    # one carrier draw to the next (`auditkit plan`), too close to the -5 the assertions need
    run_cli("mark", "shapes", "--out", str(release), "--fraction", "0.2", "--psnr", "26", "--radius", "16", "--augment", "none",
            "--marker", trained_marker["arch"], "--marker-weights", str(trained_marker["path"]), "--device", "cpu", *draw, env=env)
    marked_x, marked_y = load_image_folder(release)
    vanilla_x, vanilla_y = load_image_folder(source)
    marker = trained_marker["model"]
    models = {
        "frozen": frozen_features_suspect(marker, marked_x, marked_y),
        "frozen_clean": frozen_features_suspect(marker, vanilla_x, vanilla_y),
        "mixed": mixed_features_suspect(marker, marked_x, marked_y),
        "scratch": scratch_suspect("small_convnet", marked_x, marked_y, epochs=2),
    }
    files = {}
    for name in ("frozen", "frozen_clean", "scratch"):
        files[name] = root / f"{name}.pt"
        torch.save(models[name].state_dict(), files[name])
    for name in ("frozen", "frozen_clean"):
        files[f"{name}_ts"] = root / f"{name}_ts.pt"
        torch.jit.script(models[name]).save(str(files[f"{name}_ts"]))
    files["mixed"] = root / "mixed_module.pt"
    torch.save(models["mixed"], files["mixed"])
    return {"env": env, "root": root, "files": files, "arch": trained_marker["arch"]}


def _audit(scenario: dict, model: str, *args: str) -> dict:
    out = scenario["root"] / f"report-{Path(model).stem}-{len(args)}.json"
    result = run_cli("audit", "shapes", "--model", model, "--out", str(out), "--json", *args, env=scenario["env"])
    return json.loads(result.stdout) | {"report_path": out}


def test_frozen_features_suspect_is_detected_and_clean_is_not(scenario: dict) -> None:
    files, arch = scenario["files"], scenario["arch"]
    suspect = _audit(scenario, str(files["frozen"]), "--arch", arch)
    assert suspect["results"][0]["log10_p"] < -5
    assert suspect["results"][0]["alignment"]["identity"]
    clean = _audit(scenario, str(files["frozen_clean"]), "--arch", arch)
    assert clean["results"][0]["log10_p"] > -2  # p > 0.01
    verified = run_cli("report", "verify", str(suspect["report_path"]), env=scenario["env"])
    assert "verified" in verified.stdout


def test_torchscript_and_state_dict_give_the_same_pvalue(scenario: dict) -> None:
    files, arch = scenario["files"], scenario["arch"]
    state = _audit(scenario, str(files["frozen"]), "--arch", arch)["results"][0]
    script = _audit(scenario, str(files["frozen_ts"]), "--arch", arch)["results"][0]
    assert script["log10_p"] == pytest.approx(state["log10_p"], rel=1e-6)
    assert [r["cosine"] for r in script["per_class"]] == pytest.approx([r["cosine"] for r in state["per_class"]], abs=1e-6)
    assert _audit(scenario, str(files["frozen_clean_ts"]), "--arch", arch)["results"][0]["log10_p"] > -2


def test_alignment_is_needed_for_mixed_features(scenario: dict) -> None:
    model = str(scenario["files"]["mixed"])
    refused = run_cli("audit", "shapes", "--model", model, env=scenario["env"], check=False)
    assert refused.returncode != 0 and "--unsafe-load" in refused.stderr
    aligned = _audit(scenario, model, "--unsafe-load")["results"][0]
    assert aligned["log10_p"] < -5 and not aligned["alignment"]["identity"]
    assert aligned["alignment"]["relative_residual"] < 1e-3
    unaligned = _audit(scenario, model, "--unsafe-load", "--no-align")["results"][0]
    assert unaligned["log10_p"] > -2


def test_from_scratch_suspect_goes_through_the_pipeline(scenario: dict) -> None:
    result = _audit(scenario, str(scenario["files"]["scratch"]), "--arch", "small_convnet")["results"][0]
    assert result["alignment"]["n_images"] >= 2 * (result["dim"] + 1)
    assert -1e6 < result["log10_p"] <= 0


def test_html_report_is_a_complete_page(scenario: dict) -> None:
    html_path = scenario["root"] / "report.html"
    run_cli("audit", "shapes", "--model", str(scenario["files"]["frozen"]), "--arch", scenario["arch"],
            "--out", str(scenario["root"] / "r.json"), "--html", str(html_path), env=scenario["env"])

    class Collector(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.text: list[str] = []

        def handle_starttag(self, tag: str, attrs: list) -> None:
            self.tags.append(tag)

        def handle_data(self, data: str) -> None:
            self.text.append(data)

    page = Collector()
    page.feed(html_path.read_text())
    text = " ".join(page.text)
    assert {"html", "svg", "table", "h1"} <= set(page.tags)
    assert "strong evidence" in text and "Null hypothesis" in text
    assert not {"img", "script", "link", "iframe"} & set(page.tags)  # self-contained: nothing to fetch


def test_bad_inputs(scenario: dict) -> None:
    env, files = scenario["env"], scenario["files"]
    wrong_arch = run_cli("audit", "shapes", "--model", str(files["frozen"]), "--arch", "resnet18", env=env, check=False)
    assert wrong_arch.returncode != 0 and "check --arch" in wrong_arch.stderr
    missing = run_cli("audit", "shapes", "--model", "nope.pt", "--arch", "resnet18", env=env, check=False)
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    unreachable = run_cli("audit", "shapes", "--model", f"http://127.0.0.1:{_free_port()}/predict", "--retries", "0",
                          "--cache", str(scenario["root"] / "cache"), env=env, check=False)
    assert unreachable.returncode != 0 and "cannot reach http://127.0.0.1:" in unreachable.stderr
    for result in (wrong_arch, missing, unreachable):
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def _export_onnx(model: torch.nn.Module, path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.rand(2, 3, 32, 32),), str(path), input_names=["input"],
                          output_names=["logits"], dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))
    return path


def test_same_answer_through_state_dict_torchscript_and_onnx(scenario: dict) -> None:
    files, arch, root = scenario["files"], scenario["arch"], scenario["root"]
    from auditkit.nets import create_architecture

    for name in ("frozen", "frozen_clean"):
        model = create_architecture(arch, 10)
        model.load_state_dict(torch.load(files[name]))
        onnx_path = _export_onnx(model, root / f"{name}.onnx")
        state = _audit(scenario, str(files[name]), "--arch", arch)["results"][0]
        onnx = _audit(scenario, str(onnx_path))["results"][0]
        assert onnx["log10_p"] == pytest.approx(state["log10_p"], rel=1e-3)
        assert [r["cosine"] for r in onnx["per_class"]] == pytest.approx([r["cosine"] for r in state["per_class"]], abs=1e-4)
        assert (onnx["log10_p"] < -5) if name == "frozen" else (onnx["log10_p"] > -2)


def test_timm_models_through_timm_and_onnx(scenario: dict) -> None:
    import timm

    from adapters import InputSpec
    from auditkit.threats import load_image_folder
    from auditkit.training import train_classifier

    root = scenario["root"]
    images, labels = load_image_folder(root / "release")
    vanilla, vanilla_labels = load_image_folder(root / "source")

    def trained(arch: str, x: torch.Tensor, y: torch.Tensor, name: str) -> tuple[torch.nn.Module, Path]:
        torch.manual_seed(0)
        model = timm.create_model(arch, pretrained=False, num_classes=10)
        spec = InputSpec(mean=model.pretrained_cfg["mean"], std=model.pretrained_cfg["std"])  # what the timm adapter applies
        train_classifier(model, x[:800], y[:800], epochs=1, seed=0, batch_size=64, input_spec=spec)
        torch.save(model.state_dict(), root / f"{name}.pt")
        return model, root / f"{name}.pt"

    _, clean_weights = trained("test_resnet", vanilla, vanilla_labels, "test_resnet_clean")
    assert _audit(scenario, str(clean_weights), "--adapter", "timm", "--arch", "test_resnet")["results"][0]["log10_p"] > -2
    for arch in ("test_resnet", "test_vit"):
        model, weights = trained(arch, images, labels, arch)
        mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
        via_timm = _audit(scenario, str(weights), "--adapter", "timm", "--arch", arch)["results"][0]
        assert via_timm["dim"] == 64 and -1e6 < via_timm["log10_p"] <= 0
        assert not via_timm["alignment"]["identity"]
        if arch == "test_resnet":
            via_onnx = _audit(scenario, str(_export_onnx(model, root / f"{arch}.onnx")),
                              "--mean", ",".join(map(str, mean)), "--std", ",".join(map(str, std)))["results"][0]
            assert via_onnx["log10_p"] == pytest.approx(via_timm["log10_p"], rel=1e-3)


def test_adapter_bad_inputs(scenario: dict) -> None:
    env, root = scenario["env"], scenario["root"]
    unknown = run_cli("audit", "shapes", "--model", str(scenario["files"]["frozen"]), "--adapter", "timm",
                      "--arch", "resnet_that_does_not_exist", env=env, check=False)
    assert unknown.returncode != 0 and "timm has no model named" in unknown.stderr

    class TwoHeads(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.mean((2, 3)), x.amax((2, 3))

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TwoHeads(), (torch.rand(1, 3, 32, 32),), str(root / "two.onnx"), dynamo=True)
    several = run_cli("audit", "shapes", "--model", str(root / "two.onnx"), env=env, check=False)
    assert several.returncode != 0 and "2 outputs" in several.stderr

    class NoLinearHead(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1).repeat(1, 4)[:, :10]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(NoLinearHead(), (torch.rand(1, 3, 32, 32),), str(root / "nohead.onnx"), dynamo=True)
    blackbox = run_cli("audit", "shapes", "--model", str(root / "nohead.onnx"), "--mode", "white-box", env=env, check=False)
    assert blackbox.returncode != 0 and "logits only" in blackbox.stderr
    for result in (unknown, several, blackbox):
        assert len(result.stderr.strip().splitlines()) == 1


def test_third_party_adapter_plugin(scenario: dict, tmp_path: Path) -> None:
    import os
    import shutil

    import numpy as np

    site = tmp_path / "site"
    dist = site / "auditkit_npz_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: auditkit-npz-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[auditkit.adapters]\nnpz = auditkit_npz_plugin:load_model\n")
    shutil.copy(Path(__file__).parent / "plugin" / "auditkit_npz_plugin.py", site)
    env = dict(scenario["env"], PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))

    listed = json.loads(run_cli("adapters", "list", "--json", env=env).stdout)
    assert listed["npz"].startswith("plugin") and listed["torch"].startswith("built-in")

    rng = np.random.default_rng(0)
    model = tmp_path / "model.npz"
    np.savez(model, P=rng.standard_normal((48, 3 * 32 * 32)) / 55, W=rng.standard_normal((10, 48)), b=np.zeros(10))
    result = run_cli("audit", "shapes", "--model", str(model), "--adapter", "npz", "--out", str(tmp_path / "r.json"),
                     "--json", env=env)
    report = json.loads(result.stdout)["results"][0]
    assert report["dim"] == 64 and report["alignment"]["suspect_dim"] == 48
    assert -1e6 < report["log10_p"] <= 0
    assert "verified" in run_cli("report", "verify", str(tmp_path / "r.json"), env=env).stdout


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def blackbox(scenario: dict, trained_marker: dict) -> dict:
    """A second dataset with a high-q release (80% marked), a frozen-features suspect trained
    on it and a clean one, each behind a real `auditkit serve` process on 127.0.0.1, and a
    separate folder of vanilla images for distillation."""
    import subprocess
    import sys
    import time

    import httpx

    root, env, arch = scenario["root"], scenario["env"], scenario["arch"]
    source = shapes_folder(root / "source-hi", per_class=60, size=32, seed=11)
    holdout = shapes_folder(root / "holdout-hi", per_class=60, size=32, seed=12)
    run_cli("dataset", "add", "shapes-hi", "--source", str(source), env=env)
    run_cli("mark", "shapes-hi", "--out", str(root / "release-hi"), "--fraction", "0.8", "--psnr", "26", "--radius", "16", "--augment", "none",
            "--marker", arch, "--marker-weights", str(trained_marker["path"]), "--device", "cpu",
            "--release-id", "b1ac" * 8, env=env)
    marker = trained_marker["model"]
    files = {}
    for name, folder in (("suspect", root / "release-hi"), ("clean", source)):
        files[name] = root / f"hi-{name}.pt"
        torch.save(frozen_features_suspect(marker, *load_image_folder(folder)).state_dict(), files[name])
    processes, urls = [], {}
    for name in ("suspect", "clean"):
        port = _free_port()
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "auditkit.cli", "serve", str(files[name]), "--arch", arch, "--port", str(port)]
            + (["--probs"] if name == "clean" else []), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls[name] = f"http://127.0.0.1:{port}/predict"
    deadline = time.time() + 180
    for url in urls.values():
        while True:
            try:
                httpx.post(url, json={"images": []}, timeout=1)
                break
            except httpx.TransportError:
                assert time.time() < deadline, "auditkit serve did not start"
                time.sleep(0.2)
    yield {"urls": urls, "holdout": holdout}
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def _audit_hi(scenario: dict, url: str, *args: str) -> dict:
    out = scenario["root"] / f"report-hi-{abs(hash((url, args)))}.json"
    result = run_cli("audit", "shapes-hi", "--model", url, "--out", str(out), "--json", *args, env=scenario["env"])
    return json.loads(result.stdout) | {"report_path": out}


@pytest.mark.parametrize("mode", ["loss-gap", "distill"])
def test_black_box_audits_over_http(scenario: dict, blackbox: dict, mode: str, tmp_path: Path) -> None:
    args = ("--mode", mode, "--cache", str(tmp_path / "cache"), "--holdout", str(blackbox["holdout"]),
            "--controls", "19", "--loss-gap-images", "3")  # 600 marks and queries per loss-gap audit
    suspect = _audit_hi(scenario, blackbox["urls"]["suspect"], *args)
    clean = _audit_hi(scenario, blackbox["urls"]["clean"], *args)
    assert suspect["results"][0]["log10_p"] < -2, suspect["results"][0]  # p < 0.01
    assert clean["results"][0]["log10_p"] > -2, clean["results"][0]
    assert suspect["results"][0]["queries"] > 0
    report = json.loads(suspect["report_path"].read_text())
    assert "Authorization" not in json.dumps(report)
    assert "verified" in run_cli("report", "verify", str(suspect["report_path"]), env=scenario["env"]).stdout
    if mode == "loss-gap":
        assert suspect["results"][0]["released_reproduced"] == suspect["results"][0]["images"] == 30
        assert suspect["results"][0]["queries"] == 30 * 20
    else:
        assert suspect["results"][0]["student"]["agreement_with_suspect"] > 0.9
        again = _audit_hi(scenario, blackbox["urls"]["suspect"], *args)  # answers come from the cache
        assert again["results"][0]["queries"] == 0 and again["results"][0]["log10_p"] == suspect["results"][0]["log10_p"]


def test_plan_predicts_stronger_evidence_for_larger_fractions(scenario: dict, trained_marker: dict) -> None:
    args = ("plan", "shapes", "--marker", scenario["arch"], "--marker-weights", str(trained_marker["path"]), "--psnr", "26", "--radius", "16",
            "--augment", "none", "--images", "1500", "--draws", "2", "--device", "cpu")
    result = json.loads(run_cli(*args, "--fraction", "0.02", "--fraction", "0.5", "--json", env=scenario["env"]).stdout)
    small, large = (row["median_log10_p"] for row in result["rows"])
    assert result["classes"] == 10 and result["dim"] == 64 and result["pilot_psnr"] >= 26
    assert large < -2 and large < small <= 0
    refused = run_cli(*args, "--fraction", "0", env=scenario["env"], check=False)
    assert refused.returncode != 0 and "--fraction values must be in (0, 1]" in refused.stderr
