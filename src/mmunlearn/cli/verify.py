"""``mmunlearn verify RUN_DIR`` and ``mmunlearn verify-protection``: check what a run or an export wrote.

``verify`` checks a forget run's weights, manifest and receipt against each other; ``verify-protection``
checks a published protected dataset (``mmunlearn protect --export DIR``) against the original data.
Both print one line per check (``ok``, ``FAILED`` or ``unverified``) and exit 0 when none failed, 2
otherwise (with one ``error:`` line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..data import LAYOUTS
from ..errors import ConfigError
from ..overrides import parse_value
from ..publish import verify_export
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


def cmd_verify_protection(args: argparse.Namespace) -> int:
    """Verify a published protection against its original dataset; print one verdict per check."""
    epsilon = parse_value(args.epsilon) if args.epsilon is not None else None
    if epsilon is not None and (
        isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0 < epsilon <= 1
    ):
        raise ConfigError(f"--epsilon must be in (0, 1] (pixel units, e.g. 8/255), got {args.epsilon!r}")
    checks = verify_export(args.original, args.protected, layout=args.layout, data_dir=args.data_dir, epsilon=epsilon)
    failed = [c for c in checks if not c.ok]
    if args.json:
        record = {"protected": str(args.protected), "original": str(args.original), "passed": not failed,
                  "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]}  # fmt: skip
        print(json.dumps(record))
        return 2 if failed else 0
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{'ok' if c.ok else 'FAILED':<10} {c.name:<{width}}  {c.detail}")
    if failed:
        names = ", ".join(c.name for c in failed)
        print(f"error: {len(failed)} of {len(checks)} checks FAILED for {args.protected}: {names}", file=sys.stderr)
        return 2
    print(f"verified {args.protected}: {len(checks)} checks passed")
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``verify`` and ``verify-protection`` to the main parser's subparsers."""
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

    p = subparsers.add_parser(
        "verify-protection",
        help="check a published protected dataset against the original: budget, triggers, files, checksums",
        description="Read the folder written by `mmunlearn protect --export DIR` and the original dataset with "
        "the layout loader (same decode and resize, at the export's stored resolution) and check: every file "
        "listed with a matching SHA-256 and no other, every sample present once in its split, every training "
        "pixel within the budget of the original, val/test unchanged, every training caption carrying its "
        "trigger. Exit code 0 when every check passes, 2 otherwise.",
    )
    p.add_argument("--original", required=True, help="the original dataset: its path (a built-in name for one)")
    p.add_argument(
        "--layout",
        choices=[n for n in LAYOUTS.names() if not n.startswith("av-")],
        default=None,
        help="the original's layout (default: the one the export's manifest records)",
    )
    p.add_argument("--protected", required=True, metavar="DIR", help="the --export folder of `mmunlearn protect`")
    p.add_argument(
        "--epsilon",
        default=None,
        help="the L-inf budget to enforce, e.g. 8/255 (default: the one the manifest records)",
    )
    p.add_argument("--data-dir", default=None, help="dataset cache root (default: $MMUNLEARN_DATA or the user cache)")
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON record")
    p.set_defaults(func=cmd_verify_protection)
