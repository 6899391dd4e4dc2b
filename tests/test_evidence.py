import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditkit.errors import VerificationError
from auditkit.evidence import build_statement, read_envelope, sign_statement, verify_envelope, write_envelope


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    statement = build_statement([{"name": "model.pt", "digest": {"sha256": "ab" * 32}}], {"log10_p": -7.5})
    path = tmp_path / "report.json"
    write_envelope(path, sign_statement(statement, key))
    return path, key


def test_signed_report_verifies(signed: tuple[Path, Ed25519PrivateKey]) -> None:
    path, key = signed
    statement = verify_envelope(read_envelope(path), key.public_key())
    assert statement["predicate"] == {"log10_p": -7.5}
    assert statement["_type"] == "https://in-toto.io/Statement/v1"


def test_any_flipped_payload_byte_is_detected(signed: tuple[Path, Ed25519PrivateKey]) -> None:
    path, key = signed
    envelope = read_envelope(path)
    payload = base64.b64decode(envelope["payload"])
    for position in (0, len(payload) // 2, len(payload) - 1):
        tampered = bytearray(payload)
        tampered[position] ^= 0x01
        changed = dict(envelope, payload=base64.b64encode(bytes(tampered)).decode())
        with pytest.raises(VerificationError):
            verify_envelope(changed, key.public_key())


def test_wrong_key_and_garbage_are_refused(signed: tuple[Path, Ed25519PrivateKey], tmp_path: Path) -> None:
    path, _ = signed
    with pytest.raises(VerificationError, match="not signed by"):
        verify_envelope(read_envelope(path), Ed25519PrivateKey.generate().public_key())
    (tmp_path / "bad.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(VerificationError, match="DSSE"):
        read_envelope(tmp_path / "bad.json")
