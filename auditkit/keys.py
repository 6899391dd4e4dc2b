"""The owner's secrets: a 256-bit master secret (carrier derivation) and an Ed25519
signing key (reports). Both live in a key directory with mode 0600 files; the registry
only ever holds the public key and its fingerprint."""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from auditkit.errors import AuditkitError
from auditkit.fsutil import atomic_write_bytes

MASTER_FILE = "master.secret"
SIGNING_FILE = "signing.key"
PUBLIC_FILE = "signing.pub"
SECRET_BYTES = 32


@dataclass(frozen=True)
class OwnerKeys:
    """The loaded owner keys. ``master_secret`` must never be logged or sent anywhere."""

    master_secret: bytes
    signing_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def public_pem(self) -> str:
        return public_key_pem(self.public_key)

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def __repr__(self) -> str:  # never show secrets, even in a debugger or a traceback
        return f"OwnerKeys(fingerprint={self.fingerprint!r})"


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte Ed25519 public key, hex; also used as the DSSE keyid."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a PEM Ed25519 public key (as written by ``auditkit keys export-public``)."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except FileNotFoundError:
        raise AuditkitError(f"public key file {path} does not exist") from None
    except ValueError as exc:
        raise AuditkitError(f"{path} is not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditkitError(f"{path} is not an Ed25519 public key")
    return key


def create_keys(directory: Path) -> tuple[OwnerKeys, bool]:
    """Create the owner keys in ``directory`` unless they exist; never overwrite.

    Returns the keys and whether they were created now. Files get mode 0600 and the
    directory 0700.
    """
    directory = Path(directory)
    master_path, signing_path = directory / MASTER_FILE, directory / SIGNING_FILE
    present = [p.exists() for p in (master_path, signing_path)]
    if all(present):
        return load_keys(directory), False
    if any(present):
        missing = master_path if not present[0] else signing_path
        raise AuditkitError(
            f"key directory {directory} is incomplete ({missing.name} is missing); restore it "
            "from your backup — auditkit will not create half a key set"
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    signing_key = Ed25519PrivateKey.generate()
    atomic_write_bytes(master_path, secrets.token_bytes(SECRET_BYTES).hex().encode() + b"\n", 0o600)
    atomic_write_bytes(
        signing_path,
        signing_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    atomic_write_bytes(directory / PUBLIC_FILE, public_key_pem(signing_key.public_key()).encode())
    return load_keys(directory), True


def _read_secret_file(path: Path) -> bytes:
    if not path.exists():
        raise AuditkitError(
            f"{path} does not exist; run `auditkit init` or point --keys / AUDITKIT_KEYS at your key directory"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise AuditkitError(
            f"{path} is readable by others (mode {mode:04o}); secrets must be private: run `chmod 600 {path}`"
        )
    return path.read_bytes()


def load_keys(directory: Path) -> OwnerKeys:
    """Load the owner keys, refusing group- or world-readable secret files."""
    directory = Path(directory)
    master_text = _read_secret_file(directory / MASTER_FILE).strip()
    try:
        master = bytes.fromhex(master_text.decode())
    except ValueError:
        raise AuditkitError(f"{directory / MASTER_FILE} is corrupt (not hex); restore it from your backup") from None
    if len(master) != SECRET_BYTES:
        raise AuditkitError(f"{directory / MASTER_FILE} holds {len(master)} bytes, expected {SECRET_BYTES}")
    try:
        signing = serialization.load_pem_private_key(_read_secret_file(directory / SIGNING_FILE), password=None)
    except ValueError as exc:
        raise AuditkitError(f"{directory / SIGNING_FILE} is not a PEM private key ({exc})") from None
    if not isinstance(signing, Ed25519PrivateKey):
        raise AuditkitError(f"{directory / SIGNING_FILE} is not an Ed25519 private key")
    return OwnerKeys(master_secret=master, signing_key=signing)
