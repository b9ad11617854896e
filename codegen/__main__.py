"""``python -m slurmgate.codegen regen [--check] [--specs DIR] [--out DIR] [--policies DIR]``.

Exit status: 0 done (or, with --check, generated/ is up to date), 1 problems in the inputs or a
stale generated/ (both printed on stderr), 2 bad command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from slurmgate.codegen.pipeline import regen
from slurmgate.policies.rules import POLICY_DIR

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m slurmgate.codegen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    regen_cmd = commands.add_parser("regen", help="regenerate generated/ from specs/ and policies/")
    regen_cmd.add_argument(
        "--check",
        action="store_true",
        help="write nothing; fail with a diff summary if generated/ is stale",
    )
    regen_cmd.add_argument(
        "--specs",
        type=Path,
        default=Path("specs"),
        help="spec directory with MANIFEST (default: specs)",
    )
    regen_cmd.add_argument(
        "--out",
        type=Path,
        default=Path("generated"),
        help="output directory, wiped on write (default: generated)",
    )
    regen_cmd.add_argument(
        "--policies",
        type=Path,
        default=POLICY_DIR,
        help="directory of scopes.toml, cache.toml, accounts.toml",
    )
    regen_cmd.add_argument("-v", "--verbose", action="store_true", help="log every spec fix")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )
    outcome = regen(args.specs, args.out, args.policies, check=args.check)
    if outcome.problems:
        print(f"codegen: {len(outcome.problems)} problem(s), nothing written:", file=sys.stderr)
        for problem in outcome.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if outcome.differences:
        print("\n".join(outcome.differences), file=sys.stderr)
        return 1
    verb = "checked" if args.check else "regenerated"
    print(
        f"codegen: {verb} {args.out} for {', '.join(outcome.versions)} in {outcome.seconds:.1f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
