"""Signed evidence: an in-toto Statement v1 in a DSSE envelope, signed with Ed25519.

The report (the predicate) names what was audited in the Statement's subject (model file
digest, carrier commitment), so a verifier can check both the signature and that the
report is about the file they hold. Verification fails closed: it returns the statement or
raises :class:`~auditkit.errors.VerificationError`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError as SslibVerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from auditkit.errors import VerificationError
from auditkit.fsutil import atomic_write_bytes
from auditkit.keys import key_fingerprint

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://auditkit.dev/attestation/audit-report/v1"


def _sslib_key(public_key: Ed25519PublicKey) -> SSlibKey:
    return SSlibKey.from_crypto(public_key, keyid=key_fingerprint(public_key))


def build_statement(subjects: list[dict[str, Any]], predicate: dict[str, Any]) -> dict[str, Any]:
    """An in-toto Statement v1; each subject is ``{"name": ..., "digest": {"sha256": ...}}``."""
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE, "predicate": predicate}


def sign_statement(statement: dict[str, Any], signing_key: Ed25519PrivateKey) -> dict[str, Any]:
    """Wrap the statement in a DSSE envelope signed with ``signing_key``; returns the envelope dict."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(CryptoSigner(signing_key, _sslib_key(signing_key.public_key())))
    return envelope.to_dict()


def write_envelope(path: Path, envelope: dict[str, Any]) -> bytes:
    """Write the envelope atomically as JSON; returns the bytes written (for hashing)."""
    data = json.dumps(envelope, indent=2, sort_keys=True).encode() + b"\n"
    atomic_write_bytes(Path(path), data)
    return data


def read_envelope(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise VerificationError(f"report {path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerificationError(f"report {path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or not {"payload", "payloadType", "signatures"} <= data.keys():
        raise VerificationError(f"report {path} is not a DSSE envelope (payload/payloadType/signatures missing)")
    return data


def decode_statement(envelope: dict[str, Any]) -> dict[str, Any]:
    """The statement inside an envelope, unverified (for display)."""
    try:
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise VerificationError(f"report payload is not base64 JSON ({exc})") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise VerificationError("report payload is not an in-toto Statement v1")
    return statement


def verify_envelope(envelope: dict[str, Any], public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Verify the DSSE signature with ``public_key`` and return the statement, or raise."""
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise VerificationError(f"unexpected payload type {envelope.get('payloadType')!r}; expected {PAYLOAD_TYPE}")
    try:
        parsed = Envelope.from_dict(copy.deepcopy(envelope))  # from_dict consumes its input
    except Exception as exc:  # malformed base64 or signature entries
        raise VerificationError(f"report is not a valid DSSE envelope ({exc})") from None
    keyid = key_fingerprint(public_key)
    if keyid not in {signature.keyid for signature in parsed.signatures.values()}:
        raise VerificationError(
            f"report is not signed by key {keyid[:16]}…; pass the signer's key with --public-key"
        )
    try:
        parsed.verify([_sslib_key(public_key)], 1)
    except SslibVerificationError:
        raise VerificationError("signature does not match the payload: the report was modified after signing") from None
    statement = decode_statement(envelope)
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise VerificationError(f"unexpected predicate type {statement.get('predicateType')!r}")
    return statement
