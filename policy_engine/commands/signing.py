"""`policy-engine keygen`, `sign` and `verify-signature`: Ed25519 key pairs and signed packs (the `signing` extra).

`verify` checks a pack's invariants; `verify-signature` checks its signature, as `serve --verify-key` does.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from ..cli import EXIT_FAILED, EXIT_OK
from ..jsonio import dumps

_EXTRA = " Needs the signing extra: pip install 'payment-policy-engine[signing]'."


def register(sub: argparse._SubParsersAction) -> None:
    kg = sub.add_parser("keygen", help="make an Ed25519 key pair for signing packs",
                        description="Write a new Ed25519 key pair as PEM files: PRIVATE (mode 0600; keep it where "
                                    "packs are approved) and PUBLIC (give it to every service that runs the "
                                    "packs). Existing files are never overwritten. Exit 0, or 2 if a file cannot "
                                    "be written." + _EXTRA)
    kg.add_argument("private", help="private key file to create")
    kg.add_argument("public", help="public key file to create")
    kg.add_argument("--json", action="store_true", help="machine-readable output")
    kg.set_defaults(func=cmd_keygen)

    sg = sub.add_parser("sign", help="sign a rule pack's digest with a private key",
                        description="Load the pack (it must load: a bad pack is exit 2) and write its signature "
                                    "file (PACK/pack.sig, or FILE.sig for a one-file pack) over the pack's "
                                    "digest. Sign after review: any later change to a rule file breaks the "
                                    "signature." + _EXTRA)
    sg.add_argument("pack", help="rule pack directory or file")
    sg.add_argument("--key", required=True, help="private key file (policy-engine keygen)")
    sg.add_argument("--json", action="store_true", help="machine-readable output")
    sg.set_defaults(func=cmd_sign)

    vs = sub.add_parser("verify-signature", help="check a rule pack's signature with a public key",
                        description="Check that the pack's signature file signs the pack as it is now, with "
                                    "the public key. Exit 0 if it does; 1 if the pack is unsigned, changed since "
                                    "signing, or signed with another key; 2 if the pack, the key or the "
                                    "signature file cannot be used." + _EXTRA)
    vs.add_argument("pack", help="rule pack directory or file")
    vs.add_argument("--key", required=True, help="public key file")
    vs.add_argument("--json", action="store_true", help="machine-readable output")
    vs.set_defaults(func=cmd_verify_signature)


def cmd_keygen(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..signing import generate_keypair

    generate_keypair(args.private, args.public)
    if args.json:
        out.write(dumps({"ok": True, "private": args.private, "public": args.public}) + "\n")
    else:
        out.write(f"wrote private key {args.private} (keep it secret) and public key {args.public}\n")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..signing import sign_pack

    path = sign_pack(args.pack, args.key)
    if args.json:
        out.write(dumps({"ok": True, "signature": str(path)}) + "\n")
    else:
        out.write(f"signed {args.pack}: {path}\n")
    return EXIT_OK


def cmd_verify_signature(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..loader import load_ruleset
    from ..signing import SignatureError, verify_digest

    ruleset = load_ruleset(args.pack)
    try:
        info = verify_digest(args.pack, ruleset.digest, args.key)
    except SignatureError as exc:
        if exc.reason not in ("unsigned", "tampered", "wrong_key"):
            raise  # a file that cannot be used: bad input, exit 2
        if args.json:
            out.write(dumps({"ok": False, "pack": ruleset.pack, "digest": ruleset.digest, "reason": exc.reason,
                             "message": str(exc)}) + "\n")
        else:
            err.write(f"policy-engine verify-signature: {exc}\n")
        return EXIT_FAILED
    if args.json:
        out.write(dumps({"ok": True, "pack": ruleset.pack, "version": ruleset.version, "digest": info.digest,
                         "key_id": info.key_id, "signed_at": info.signed_at}) + "\n")
    else:
        out.write(f"ok: {ruleset.pack} {ruleset.version} ({info.digest}) signed by key {info.key_id} at "
                  f"{info.signed_at}\n")
    return EXIT_OK
