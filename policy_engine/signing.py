"""Signed packs: an Ed25519 signature over a pack's digest, so a service can refuse a pack nobody approved.

The digest (:attr:`RuleSet.digest`) covers the parsed content of every rule file, so the signature covers every
rule, list, FX table and manifest key, and nothing a comment or reformatting changes. ``pack.sig`` (beside the
rule files; for a one-file pack ``FILE.sig``) is not a rule file and not part of the digest::

    {"algorithm": "ed25519", "digest": "sha256:...", "key_id": "3f5c...", "signed_at": "...", "signature": "..."}

The signature is made over a domain-separated message holding the algorithm, digest, key id and signing time, so
none of them can be changed without breaking it. Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo
public); the key id is the first 16 hex digits of SHA-256 of the raw 32-byte public key.

Needs the ``signing`` extra (``cryptography``): ``pip install 'payment-policy-engine[signing]'``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PolicyEngineError
from .loader import load_ruleset

ALGORITHM = "ed25519"
SIGNATURE_FILE = "pack.sig"
#: Prefixed to what is signed, so a signature made for a pack can never pass as one over anything else.
_CONTEXT = b"policy-engine pack signature v1\n"
_FIELDS = ("algorithm", "digest", "key_id", "signed_at", "signature")
#: A signature file is a few hundred bytes; anything much larger is not one.
_MAX_SIGNATURE_FILE = 4096


class SignatureError(PolicyEngineError):
    """A pack's signature is missing or does not hold. ``reason`` is ``unsigned``, ``tampered`` (the pack or the
    signature changed since signing), ``wrong_key`` (signed by another key), ``malformed`` (a signature file
    that is not one), ``bad_key`` (a key file that cannot be read, written or used) or ``unavailable`` (the
    ``signing`` extra is not installed)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class SignatureInfo:
    """A verified signature: who signed (``key_id``), what (``digest``) and when (``signed_at``, ISO 8601 UTC)."""

    key_id: str
    digest: str
    signed_at: str


def signature_path(pack: str | Path) -> Path:
    """Where a pack's signature lives: ``PACK/pack.sig`` for a directory, ``FILE.sig`` for a one-file pack."""
    path = Path(pack)
    return path.with_name(path.name + ".sig") if path.is_file() else path / SIGNATURE_FILE


def generate_keypair(private_path: str | Path, public_path: str | Path) -> None:
    """Write a new Ed25519 key pair as PEM files: the private key readable by its owner only (mode 0600). Refuses
    to overwrite either file: replacing a signing key is a decision, not a side effect."""
    ed25519, serialization = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    for path in (private_path, public_path):
        if Path(path).exists():
            raise SignatureError("bad_key", f"{path} already exists; remove it or choose another path (a key "
                                              "file is never overwritten)")
    _write_new(Path(private_path), private_pem, 0o600)
    _write_new(Path(public_path), public_pem, 0o644)


def sign_pack(pack_dir: str | Path, private_key_path: str | Path) -> Path:
    """Load the pack (a bad pack is a :class:`~policy_engine.RuleSetError`: only a loadable pack is signed),
    sign its digest with the private key and write the signature file; returns its path."""
    ed25519, serialization = _crypto()
    key = _load_key(private_key_path, private=True)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    ruleset = load_ruleset(pack_dir)
    public_raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    fields = {"algorithm": ALGORITHM, "digest": ruleset.digest, "key_id": _key_id(public_raw),
              "signed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")}
    signature = key.sign(_message(fields))
    document = {**fields, "signature": base64.b64encode(signature).decode("ascii")}
    path = signature_path(pack_dir)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def verify_pack(pack_dir: str | Path, public_key_path: str | Path) -> SignatureInfo:
    """Load the pack and check its signature with the public key; raises :class:`SignatureError` saying what is
    wrong (and a bad pack raises :class:`~policy_engine.RuleSetError`)."""
    return verify_digest(pack_dir, load_ruleset(pack_dir).digest, public_key_path)


def verify_digest(pack: str | Path, digest: str, public_key_path: str | Path) -> SignatureInfo:
    """Check that the signature file of ``pack`` signs ``digest`` (the digest of the pack as it was loaded, so
    what is checked is what runs) with the public key."""
    ed25519, serialization = _crypto()
    from cryptography.exceptions import InvalidSignature

    key = _load_key(public_key_path, private=False)
    assert isinstance(key, ed25519.Ed25519PublicKey)
    path = signature_path(pack)
    fields, signature = _read_signature(path)
    expected = _key_id(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    if fields["key_id"] != expected:
        raise SignatureError("wrong_key", f"{path} was made with key {fields['key_id']}, not with the verify key "
                                          f"{public_key_path} ({expected}); sign the pack with that key's private "
                                          "key, or verify with the key it was signed with")
    try:
        key.verify(signature, _message(fields))
    except InvalidSignature:
        raise SignatureError("tampered", f"{path} does not verify with key {expected}: the signature file was "
                                         "altered after signing; sign the pack again") from None
    if fields["digest"] != digest:
        raise SignatureError("tampered", f"pack {pack} changed since it was signed: its digest is {digest}, the "
                                         f"signature in {path} is for {fields['digest']}; review the change and "
                                         "sign the pack again")
    return SignatureInfo(fields["key_id"], fields["digest"], fields["signed_at"])


def _crypto() -> tuple[Any, Any]:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise SignatureError("unavailable", f"signed packs need the cryptography package ({exc}); install it "
                                            "with pip install 'payment-policy-engine[signing]'") from None
    return ed25519, serialization


def _key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _message(fields: dict[str, str]) -> bytes:
    signed = {k: fields[k] for k in ("algorithm", "digest", "key_id", "signed_at")}
    return _CONTEXT + json.dumps(signed, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _load_key(path: str | Path, private: bool) -> Any:
    ed25519, serialization = _crypto()
    kind = "private" if private else "public"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SignatureError("bad_key", f"cannot read the {kind} key {path}: {exc.strerror or exc}") from None
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as exc:
        raise SignatureError("bad_key", f"{path} is not an unencrypted PEM {kind} key ({exc}); make a key pair "
                                          "with policy-engine keygen") from None
    wanted = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, wanted):
        raise SignatureError("bad_key", f"{path} is a {type(key).__name__.lstrip('_')}, not an Ed25519 {kind} "
                                          "key; make a key pair with policy-engine keygen")
    return key


def _read_signature(path: Path) -> tuple[dict[str, str], bytes]:
    """The fields of a signature file and the raw signature, or a :class:`SignatureError` naming the problem."""
    if not path.exists():
        raise SignatureError("unsigned", f"the pack is not signed: there is no {path}; sign it with "
                                         f"policy-engine sign PACK --key PRIVATE_KEY")
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_SIGNATURE_FILE + 1)
    except OSError as exc:
        raise SignatureError("malformed", f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > _MAX_SIGNATURE_FILE:
        raise SignatureError("malformed", f"{path} is longer than a signature file can be; sign the pack again")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SignatureError("malformed", f"{path} is not a signature file (not JSON: {exc}); sign the pack "
                                          "again") from None
    if not isinstance(document, dict) or any(not isinstance(document.get(k), str) for k in _FIELDS):
        raise SignatureError("malformed", f"{path} is not a signature file: it needs the string fields "
                                          f"{', '.join(_FIELDS)}; sign the pack again")
    if document["algorithm"] != ALGORITHM:
        raise SignatureError("malformed", f"{path} uses algorithm {document['algorithm'][:40]!r}; only "
                                          f"{ALGORITHM} is accepted")
    try:
        signature = base64.b64decode(document["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed", f"{path}: the signature is not base64; sign the pack again") from None
    return {k: document[k] for k in _FIELDS}, signature


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (a private key is never briefly readable by others)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise SignatureError("bad_key", f"cannot create {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
