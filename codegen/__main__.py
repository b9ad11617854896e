"""``python -m slurmgate.codegen regen|clients|publish``.

``regen [--check] [--specs DIR] [--out DIR] [--policies DIR]``: exit status 0 done (or, with
--check, generated/ is up to date), 1 problems in the inputs or a stale generated/ (both printed on
stderr), 2 bad command line. ``clients``: 0 built, 1 problems (all printed). ``publish``: 0
uploaded, 1 twine failed, 2 nothing to upload or no index configured.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from slurmgate.codegen.packages import PublishError, make_clients, publish
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
        help="directory of scopes.toml, cache.toml, accounts.toml and endpoints/*.yaml",
    )
    regen_cmd.add_argument("-v", "--verbose", action="store_true", help="log every spec fix")
    clients_cmd = commands.add_parser(
        "clients", help="generate and build a client package per API version (make clients)"
    )
    clients_cmd.add_argument("--specs", type=Path, default=Path("specs"), help="spec directory")
    clients_cmd.add_argument(
        "--policies", type=Path, default=POLICY_DIR, help="directory of the policy files"
    )
    clients_cmd.add_argument(
        "--build-dir",
        type=Path,
        default=Path("build/clients"),
        help="where the generated sources go, wiped first (default: build/clients)",
    )
    clients_cmd.add_argument(
        "--dist", type=Path, default=Path("dist"), help="wheels and sdists (default: dist)"
    )
    clients_cmd.add_argument(
        "--project-version",
        help="slurmgate version in the package versions (default: the installed slurmgate's)",
    )
    publish_cmd = commands.add_parser(
        "publish",
        help="upload dist/'s client packages with twine (make publish)",
        description="The index: --repository-url or TWINE_REPOSITORY_URL (credentials from "
        "TWINE_USERNAME and TWINE_PASSWORD), or --repository or TWINE_REPOSITORY naming a "
        "section of ~/.pypirc.",
    )
    publish_cmd.add_argument(
        "--dist", type=Path, default=Path("dist"), help="directory of the client packages"
    )
    publish_cmd.add_argument("--repository", help="a section of the .pypirc")
    publish_cmd.add_argument("--repository-url", help="the index's upload URL")
    publish_cmd.add_argument("--config-file", type=Path, help="the .pypirc (default ~/.pypirc)")
    return parser


def _clients(args: argparse.Namespace) -> int:
    outcome = make_clients(
        args.specs, args.policies, args.build_dir, args.dist, version=args.project_version
    )
    if outcome.problems:
        print(f"codegen: {len(outcome.problems)} problem(s) building clients:", file=sys.stderr)
        for problem in outcome.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    for path in outcome.files:
        print(f"  {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    print(
        f"codegen: built {len(outcome.packages)} client package(s) in {outcome.seconds:.1f}s",
        file=sys.stderr,
    )
    return 0


def _publish(args: argparse.Namespace) -> int:
    try:
        done = publish(
            args.dist,
            os.environ,
            repository=args.repository,
            repository_url=args.repository_url,
            config_file=args.config_file,
        )
    except PublishError as error:
        print(f"publish: {error}", file=sys.stderr)
        return 2
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        print(f"publish: twine failed (exit {done.returncode}):\n{output}", file=sys.stderr)
        return 1
    print(output, file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.command == "regen" and args.verbose else logging.INFO,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "clients":
        return _clients(args)
    if args.command == "publish":
        return _publish(args)
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
