"""`auditkit demo` end to end (the README's main job), on generated data."""

from pathlib import Path

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow


def test_demo_detects_the_suspect_and_clears_the_clean_model(tmp_path: Path, owner_env: dict[str, str]) -> None:
    result = run_cli("demo", "--data", "generated", "--dir", str(tmp_path / "demo"), env=owner_env)
    assert "detected" in result.stdout and "flagged" not in result.stdout and "not detected;" not in result.stdout
    assert not Path(owner_env["AUDITKIT_KEYS"]).exists(), "the demo must not touch the user's keys"
    for name in ("report-suspect.json", "report-clean.json", "report-suspect.html"):
        assert (tmp_path / "demo" / name).exists()
    verify = run_cli("--keys", str(tmp_path / "demo" / "keys"), "report", "verify", str(tmp_path / "demo" / "report-suspect.json"), env=owner_env)
    assert "verified" in verify.stdout
    refused = run_cli("demo", "--dir", str(tmp_path), env=owner_env, check=False)
    assert refused.returncode != 0 and "not made by `auditkit demo`" in refused.stderr
