"""`auditkit mark` end to end: the real CLI on generated images and a saved network."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, shapes_folder

pytestmark = pytest.mark.slow


def _hashes(root: Path) -> dict[str, str]:
    from auditkit.fsutil import sha256_file

    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def registered(tmp_path: Path, owner_env: dict[str, str]) -> Path:
    source = shapes_folder(tmp_path / "source", per_class=30, size=32)
    (source / "README.txt").write_text("dataset card")
    # one grayscale and one RGBA image, to check modes are kept
    Image.fromarray(np.full((32, 32), 90, np.uint8), mode="L").save(source / "class0" / "gray.png")
    Image.fromarray(np.full((32, 32, 4), 120, np.uint8), mode="RGBA").save(source / "class1" / "alpha.png")
    run_cli("init", env=owner_env)
    run_cli("dataset", "add", "shapes", "--source", str(source), env=owner_env)
    return source


def test_mark_release(registered: Path, tmp_path: Path, owner_env: dict[str, str], trained_marker: dict) -> None:
    source, out = registered, tmp_path / "release"
    before = _hashes(source)
    result = run_cli(
        "mark", "shapes", "--out", str(out), "--fraction", "0.2", "--marker", trained_marker["arch"],
        "--marker-weights", str(trained_marker["path"]), "--device", "cpu", "--json", env=owner_env,
    )
    summary = json.loads(result.stdout)
    assert _hashes(source) == before, "the source tree must never be written"
    assert summary["marked"] == 60 and summary["psnr_mean"] >= 40.0 and summary["shift_mean"] > 0

    shown = json.loads(run_cli("release", "show", "shapes", summary["release"], "--items", "--json", env=owner_env).stdout)
    assert shown["status"] == "complete" and len(shown["items"]) == summary["marked"]
    marked = {item["release"]: item for item in shown["items"]}
    manifest = json.loads((out / "manifest.json").read_text())
    files = _hashes(out)
    files.pop("manifest.json")
    assert manifest["files"] == files and manifest["carrier_commitment"] == shown["carrier_commitment"]
    assert "carriers" not in json.dumps(manifest).replace("carrier_commitment", "")

    for relpath, digest in files.items():
        if relpath in marked:
            item = marked[relpath]
            original, new = Image.open(source / item["source"]), Image.open(out / relpath)
            assert (original.size, original.mode) == (new.size, new.mode)
            delta = np.asarray(new, np.int16) - np.asarray(original, np.int16)
            assert np.abs(delta).max() <= 10
            assert digest == item["sha256_after"] and item["psnr"] >= 40.0
        else:
            assert digest == before[relpath], f"{relpath} must be copied byte for byte"
    assert np.mean([i["shift"] for i in shown["items"]]) > 0
    # the selection is secret: no release file lists it
    assert not any("marked" in p for p in files)

    again = run_cli("mark", "shapes", "--out", str(out), "--marker", trained_marker["arch"],
                    "--marker-weights", str(trained_marker["path"]), env=owner_env, check=False)
    assert again.returncode != 0 and "not empty" in again.stderr


def _wait_for_items(db: Path, count: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "marking finished before it could be interrupted"
        try:
            with sqlite3.connect(db) as connection:
                if connection.execute("SELECT COUNT(*) FROM marked_items").fetchone()[0] >= count:
                    return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    raise AssertionError("marking made no progress")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_mark_resumes_to_the_uninterrupted_result(
    registered: Path, tmp_path: Path, owner_env: dict[str, str], trained_marker: dict, sig: signal.Signals
) -> None:
    out = tmp_path / "release"
    args = ["mark", "shapes", "--out", str(out), "--fraction", "0.3", "--marker", trained_marker["arch"],
            "--marker-weights", str(trained_marker["path"]), "--device", "cpu", "--batch-size", "4", "--steps", "20"]
    # A shell's background jobs inherit SIGINT ignored (and Python then keeps ignoring it): give the
    # child the default disposition so SIGINT means Ctrl-C however the tests were started.
    process = subprocess.Popen([sys.executable, "-m", "auditkit.cli", *args], env=owner_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    db = Path(owner_env["AUDITKIT_REGISTRY"].removeprefix("sqlite:///"))
    _wait_for_items(db, 8, process)
    process.send_signal(sig)
    assert process.wait(timeout=60) != 0
    listed = json.loads(run_cli("release", "list", "shapes", "--json", env=owner_env).stdout)
    assert listed[0]["status"] == "in-progress"
    assert not (out / "manifest.json").exists()

    run_cli(*args, "--resume", env=owner_env)
    resumed = _hashes(out)
    assert not any(Path(p).name.startswith(".") for p in resumed), "no temporary files may remain"

    # The same release computed without interruption: forget every marked item and file, resume again.
    with sqlite3.connect(db) as connection:
        connection.execute("DELETE FROM marked_items")
        connection.execute("UPDATE releases SET status = 'in-progress'")
    for relpath in resumed:
        (out / relpath).unlink()
    run_cli(*args, "--resume", env=owner_env)
    assert _hashes(out) == resumed


def test_corrupt_image_stops_the_run_or_is_skipped(tmp_path: Path, owner_env: dict[str, str], trained_marker: dict) -> None:
    source = shapes_folder(tmp_path / "source", per_class=2, size=32)
    run_cli("init", env=owner_env)
    run_cli("dataset", "add", "tiny", "--source", str(source), env=owner_env)
    broken = source / "class3" / sorted(p.name for p in (source / "class3").iterdir())[0]
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # corrupted after registration
    args = ["mark", "tiny", "--fraction", "1.0", "--steps", "2", "--marker", trained_marker["arch"],
            "--marker-weights", str(trained_marker["path"])]
    stopped = run_cli(*args, "--out", str(tmp_path / "a"), env=owner_env, check=False)
    assert stopped.returncode != 0 and broken.name in stopped.stderr and "--skip-bad" in stopped.stderr
    assert len(stopped.stderr.strip().splitlines()) == 1
    skipped = json.loads(run_cli(*args, "--out", str(tmp_path / "b"), "--release", "r2", "--skip-bad", "--json", env=owner_env).stdout)
    assert skipped["skipped_bad"] == [f"class3/{broken.name}"] and skipped["marked"] == 19
    assert (tmp_path / "b" / "class3" / broken.name).read_bytes() == broken.read_bytes()


def test_marking_options_are_checked_and_recorded(registered: Path, tmp_path: Path, owner_env: dict[str, str],
                                                  trained_marker: dict) -> None:
    def mark(out: str, *extra: str) -> list[str]:
        return ["mark", "shapes", "--out", str(tmp_path / out), "--marker", trained_marker["arch"],
                "--marker-weights", str(trained_marker["path"]), "--fraction", "0.1", "--steps", "2", *extra]

    for flag, value in (("--momentum", "1.0"), ("--momentum", "-0.1"), ("--steps", "0"), ("--augment", "rotate"),
                        ("--radius", "0"), ("--release-id", "not-hex")):
        bad = run_cli(*mark("r", flag, value), env=owner_env, check=False)
        assert bad.returncode != 0 and flag in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    assert json.loads(run_cli("release", "list", "shapes", "--json", env=owner_env).stdout) == []
    summary = json.loads(run_cli(*mark("r", "--momentum", "0.5", "--release-id", "0123abcd" * 4, "--json"), env=owner_env).stdout)
    shown = json.loads(run_cli("release", "show", "shapes", summary["release"], "--json", env=owner_env).stdout)
    assert shown["params"]["momentum"] == 0.5 and shown["params"]["steps"] == 2
    assert summary["release_id"] == "0123abcd" * 4
    reused = run_cli(*mark("r2", "--release-id", "0123abcd" * 4), env=owner_env, check=False)
    assert reused.returncode != 0 and "already used" in reused.stderr and not (tmp_path / "r2").exists()
