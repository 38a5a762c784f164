"""`policy-engine verify`: search for counterexamples to a pack's invariants with Hypothesis."""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import TextIO

from ..cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from ..jsonio import dumps
from ..matchers import MATCHERS


def register(sub: argparse._SubParsersAction) -> None:
    ve = sub.add_parser("verify", help="check a pack's invariants against generated requests (Hypothesis)",
                        description="Check the invariants of a rule pack (default: PACK/tests/invariants.yaml) "
                                    "against generated requests, and print each falsified invariant with its "
                                    "shrunk counterexample and the trail. Exit 0 if every invariant held, 1 if "
                                    "any was falsified, 2 if the pack or the invariants file is bad.")
    ve.add_argument("pack", help="rule pack directory or file")
    ve.add_argument("--invariants", help="invariants file (default: PACK/tests/invariants.yaml)")
    ve.add_argument("--examples", type=int, default=None, metavar="N",
                    help="generated cases per invariant (default: 100)")
    ve.add_argument("--seed", type=int, help="random seed, to repeat a run (default: a fresh one, printed)")
    ve.add_argument("--only", action="append", metavar="ID", help="check only this invariant (repeatable)")
    ve.add_argument("--matcher", choices=MATCHERS, help="matcher (default: python)")
    ve.add_argument("--json", action="store_true", help="machine-readable output")
    ve.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        from ..testing import invariants as inv
    except ImportError as exc:  # Hypothesis is an optional dependency of the library
        err.write(f"policy-engine verify needs Hypothesis ({exc}); install it with "
                  "pip install 'payment-policy-engine[test]'\n")
        return EXIT_BAD_INPUT
    from ..engine import PolicyEngine

    if not Path(args.pack).exists():  # else the missing invariants file beside it would be the complaint
        err.write(f"policy-engine verify: no rule pack at {args.pack}\n")
        return EXIT_BAD_INPUT
    path = args.invariants or inv.default_invariants_path(args.pack)
    if not Path(path).is_file():
        err.write(f"policy-engine verify: no invariants file at {path}; write one (README 'Property-based "
                  "testing') or pass --invariants FILE\n")
        return EXIT_BAD_INPUT
    engine = PolicyEngine.from_path(args.pack, matcher=args.matcher)
    try:
        invariants = inv.load_invariants(path)  # a bad file: InvariantError, exit 2
        if args.only:
            unknown = sorted(set(args.only) - {i.id for i in invariants})
            if unknown:
                err.write(f"policy-engine verify: no invariant {', '.join(unknown)} in {path}\n")
                return EXIT_BAD_INPUT
            invariants = tuple(i for i in invariants if i.id in args.only)
        examples = args.examples if args.examples is not None else inv.DEFAULT_EXAMPLES
        if examples < 1:
            err.write("policy-engine verify: --examples must be at least 1\n")
            return EXIT_BAD_INPUT
        # A run without --seed still prints its seed, so a falsification can be repeated exactly.
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
        results = inv.verify(engine, invariants, examples=examples, seed=seed)
    finally:
        engine.close()
    falsified = [r for r in results if not r.held]
    info = engine.ruleset
    if args.json:
        out.write(dumps({"ok": not falsified, "pack": info.pack, "version": info.version, "digest": info.digest,
                         "invariants_file": str(path), "examples": examples, "seed": seed,
                         "held": len(results) - len(falsified), "falsified": len(falsified),
                         "results": [inv.result_to_dict(r) for r in results]}) + "\n")
    else:
        out.write(f"verify {info.pack} {info.version} against {path}: {len(results)} invariant(s), "
                  f"{examples} example(s) each, seed {seed}\n")
        for result in results:
            out.write(inv.format_result(result) + "\n")
        out.write(f"{len(results) - len(falsified)} held, {len(falsified)} falsified\n")
    return EXIT_FAILED if falsified else EXIT_OK

