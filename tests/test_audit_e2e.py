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
from conftest import run_cli, shapes_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, trained_marker: dict) -> dict:
    import os

    root = tmp_path_factory.mktemp("audit")
    env = dict(os.environ, AUDITKIT_REGISTRY=f"sqlite:///{root / 'registry.db'}", AUDITKIT_KEYS=str(root / "keys"))
    source = shapes_folder(root / "source", per_class=300, size=32)
    run_cli("init", env=env)
    run_cli("dataset", "add", "shapes", "--source", str(source), env=env)
    release = root / "release"
    run_cli("mark", "shapes", "--out", str(release), "--fraction", "0.2", "--psnr", "30", "--augment", "none",
            "--marker", trained_marker["arch"], "--marker-weights", str(trained_marker["path"]), "--device", "cpu", env=env)
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
    files["frozen_ts"] = root / "frozen_ts.pt"
    torch.jit.script(models["frozen"]).save(str(files["frozen_ts"]))
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
    for result in (wrong_arch, missing):
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
