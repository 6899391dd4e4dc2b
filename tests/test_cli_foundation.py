"""The foundation commands through the real CLI, in subprocesses."""

import base64
import json
import os
from pathlib import Path

from conftest import make_image_folder, run_cli


def test_init_dataset_and_report_flow(tmp_path: Path, owner_env: dict[str, str]) -> None:
    source = make_image_folder(tmp_path / "data", classes=3, per_class=4)
    (source / "LICENSE.txt").write_text("cc-by")
    first = json.loads(run_cli("init", "--json", env=owner_env).stdout)
    second = json.loads(run_cli("init", "--json", env=owner_env).stdout)
    assert first["keys_created"] and not second["keys_created"]
    assert first["fingerprint"] == second["fingerprint"]

    run_cli("dataset", "add", "demo", "--source", str(source), env=owner_env)
    shown = json.loads(run_cli("dataset", "show", "demo", "--json", env=owner_env).stdout)
    assert shown["classes"] == ["class00", "class01", "class02"]
    assert shown["image_count"] == 12 and shown["class_counts"] == [4, 4, 4]
    listed = json.loads(run_cli("dataset", "list", "--json", env=owner_env).stdout)
    assert [d["name"] for d in listed] == ["demo"]

    duplicate = run_cli("dataset", "add", "demo", "--source", str(source), env=owner_env, check=False)
    assert duplicate.returncode != 0
    assert duplicate.stderr.strip().count("\n") == 0 and "already exists" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr


def test_bad_inputs_get_one_line_errors(tmp_path: Path, owner_env: dict[str, str]) -> None:
    missing = run_cli("dataset", "list", env=owner_env, check=False)
    assert missing.returncode != 0 and "auditkit init" in missing.stderr

    run_cli("init", env=owner_env)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("dataset", "add", "x", "--source", str(empty), env=owner_env, check=False)
    assert result.returncode != 0 and "no class directories" in result.stderr

    corrupt = make_image_folder(tmp_path / "corrupt", classes=2, per_class=2)
    (corrupt / "class00" / "img000.png").write_bytes(b"not a png")
    result = run_cli("dataset", "add", "x", "--source", str(corrupt), env=owner_env, check=False)
    assert result.returncode != 0 and "img000.png" in result.stderr and len(result.stderr.strip().splitlines()) == 1

    os.chmod(Path(owner_env["AUDITKIT_KEYS"]) / "master.secret", 0o644)
    result = run_cli("keys", "export-public", env=owner_env, check=False)
    assert result.returncode != 0 and "chmod 600" in result.stderr


def test_report_verify_detects_a_flipped_byte(tmp_path: Path, owner_env: dict[str, str]) -> None:
    from auditkit.evidence import build_statement, sign_statement, write_envelope
    from auditkit.keys import load_keys

    run_cli("init", env=owner_env)
    keys = load_keys(Path(owner_env["AUDITKIT_KEYS"]))
    report = tmp_path / "report.json"
    statement = build_statement([{"name": "m", "digest": {"sha256": "00" * 32}}], {"log10_p": -3.0})
    write_envelope(report, sign_statement(statement, keys.signing_key))
    run_cli("keys", "export-public", "--out", str(tmp_path / "owner.pub"), env=owner_env)

    ok = run_cli("report", "verify", str(report), "--public-key", str(tmp_path / "owner.pub"), env=owner_env)
    assert "verified" in ok.stdout
    shown = run_cli("report", "show", str(report), env=owner_env)
    assert "log10_p" in shown.stdout

    envelope = json.loads(report.read_text())
    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[10] ^= 0x01
    envelope["payload"] = base64.b64encode(bytes(payload)).decode()
    report.write_text(json.dumps(envelope))
    bad = run_cli("report", "verify", str(report), "--public-key", str(tmp_path / "owner.pub"), env=owner_env, check=False)
    assert bad.returncode != 0 and "modified" in bad.stderr
