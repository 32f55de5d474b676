"""``mmunlearn verify RUN_DIR``: check a forget run's weights, manifest and receipt against each other.

Prints one line per check (``ok``, ``FAILED`` or ``unverified``) and exits 0 when none failed, 2 otherwise
(with one ``error:`` line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..receipts import FAILED, read_key, verify_run


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify a run folder; print what was checked."""
    key = read_key(args.key) if args.key is not None else None
    checks = verify_run(args.run_dir, key)
    failed = [c for c in checks if c.status == FAILED]
    if args.json:
        print(json.dumps({"run": str(args.run_dir), "passed": not failed, "checks": [c.to_dict() for c in checks]}))
        return 2 if failed else 0
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.status:<10} {c.name:<{width}}  {c.detail}")
    if failed:
        names = ", ".join(c.name for c in failed)
        print(f"error: {len(failed)} of {len(checks)} checks FAILED for {args.run_dir}: {names}", file=sys.stderr)
        return 2
    unverified = sum(c.status != "ok" for c in checks)
    note = f" ({unverified} unverified: no --key)" if unverified else ""
    print(f"verified {args.run_dir}: {len(checks)} checks passed{note}")
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``verify`` to the main parser's subparsers."""
    p = subparsers.add_parser(
        "verify",
        help="check a forget run: file hashes, the receipt against the weights and metrics, the signature",
        description="Check the folder written by `mmunlearn forget --out RUN_DIR`: the SHA-256 of every file "
        "its manifest lists, that the receipt names the hash of the weights there and the metrics of "
        "metrics.json, and with --key the receipt's HMAC. Exit code 0 when every check passes, 2 otherwise.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of `mmunlearn forget`")
    p.add_argument("--key", default=None, metavar="FILE", help="the key file the receipt was signed with")
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON record")
    p.set_defaults(func=cmd_verify)
