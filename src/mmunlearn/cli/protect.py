"""``mmunlearn protect`` and ``mmunlearn victim``: parse, build a config, call one library function, print.

`add_commands` adds both commands to the main parser's subparsers. Handlers return an exit code and
raise `mmunlearn.errors.MMUnlearnError` subclasses on bad input (the main entry point prints them).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data import DATASETS, LAYOUTS, SIZES, DatasetRef
from ..data.store import default_data_dir
from ..errors import CheckpointError, ConfigError, DataError
from ..outputs import Found, check_cache, check_output_folder, clear_output, refuse_existing
from ..overrides import parse_sets, parse_value
from ..protection import protect_builtin, victim_from_dir
from ..protectors import PROTECTORS, ProtectedDataset
from ..protectors.defences import DEFENCES
from ..protectors.protected import FORMAT as PROTECTED_FORMAT
from ..protectors.protected import read_protected_manifest
from ..publish import export_protected
from ..results import MetricResult, RunRecord
from ..textfmt import format_table
from ..versions import versions
from ..victim import REGIMES, VictimConfig


def protect_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Protector config overrides from ``--epsilon``, ``--trigger-len``, ``--seed`` and ``--set``."""
    out = parse_sets(args.set or [])
    if args.epsilon is not None:
        out["epsilon"] = parse_value(args.epsilon)
    if args.trigger_len is not None:
        out["trigger_len"] = args.trigger_len
    if args.seed is not None:
        out["seed"] = args.seed
    return out


# -- handlers -----------------------------------------------------------------------------------------
def check_protect_args(args: argparse.Namespace) -> tuple[dict[str, Any], Found]:
    """Every protect argument checked before any work: the overrides (returned), dataset, cache and ``--out``.

    Raises:
        ConfigError: an unknown protector, a bad config value or seed, or an unusable output folder.
        DataError: an unknown dataset.
    """
    overrides = protect_overrides(args)
    if args.method not in PROTECTORS:
        raise ConfigError(f"unknown protector {args.method!r}; known protectors: {', '.join(PROTECTORS.names())}")
    PROTECTORS.create(args.method, **overrides)
    if args.layout is None and args.dataset not in DATASETS:
        raise DataError(f"unknown dataset {args.dataset!r}; built-in datasets: {', '.join(DATASETS.names())}")
    if args.data_seed < 0:
        raise ConfigError(f"--data-seed must be >= 0, got {args.data_seed}")
    ref = DatasetRef.of(args.dataset, args.size, args.data_seed, args.layout)
    flag = "--data-dir" if args.data_dir else "the dataset cache"
    check_cache(default_data_dir(args.data_dir), [ref.cache_root(args.data_dir)], flag)
    _check_export_folder(args)
    return overrides, check_output_folder(args.out, PROTECTED_FORMAT)


def _check_export_folder(args: argparse.Namespace) -> None:
    """``--export`` must be a new or empty folder (or ``--overwrite``), and not the ``--out`` folder.

    Raises:
        CheckpointError: it is not.
    """
    export = getattr(args, "export", None)
    if export is None:
        return
    path = Path(export)
    if path.resolve() == Path(args.out).resolve():
        raise CheckpointError(f"--export {export} must differ from --out (the export is a dataset, not a protection)")
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not args.overwrite:
        raise CheckpointError(f"--export {export} is not an empty folder; --overwrite replaces it")


def _export(args: argparse.Namespace, protected: ProtectedDataset) -> None:
    """Write the publishable files of ``protected`` to ``--export`` (when given) and say so."""
    if getattr(args, "export", None) is None:
        return
    out = export_protected(protected, args.export, data_dir=args.data_dir, overwrite=args.overwrite)
    if not args.json:
        print(f"exported the protected dataset to {out} (check it: mmunlearn verify-protection --original "
              f"{args.dataset} --protected {out})")  # fmt: skip


def same_protection(found: Found, args: argparse.Namespace, overrides: dict[str, Any]) -> bool:
    """Whether the protection ``--out`` holds was made by this very command (method, config, source data)."""
    manifest = found.manifest or {}
    config = PROTECTORS.create(args.method, **overrides).config.to_dict()
    source = manifest.get("source")
    ref = DatasetRef.of(args.dataset, args.size, args.data_seed, args.layout)
    wanted = {**ref.provenance(), "split": "train"}
    return (
        manifest.get("method") == args.method
        and manifest.get("config") == json.loads(json.dumps(config))
        and isinstance(source, dict)
        and all(source.get(k) == v for k, v in wanted.items())
    )


def cmd_protect(args: argparse.Namespace) -> int:
    """Protect a built-in dataset's training split and save it to ``--out``."""
    t0 = time.perf_counter()
    overrides, found = check_protect_args(args)
    if found.format is not None and not args.overwrite:
        if not same_protection(found, args, overrides):
            refuse_existing(args.out, found)
        print(json.dumps({"out": str(args.out), "already_complete": True}) if args.json else
              f"{args.out} already holds this {args.method} protection, complete; nothing to do "
              "(--overwrite makes it again)")  # fmt: skip
        _export(args, ProtectedDataset.load(args.out))
        return 0
    if args.overwrite:
        clear_output(args.out, found)
    protected = protect_builtin(
        args.dataset,
        args.method,
        args.out,
        size=args.size,
        data_seed=args.data_seed,
        overrides=overrides,
        data_dir=args.data_dir,
        progress=not args.quiet,
        layout=args.layout,
    )
    summary = {
        "method": protected.method,
        "dataset": args.dataset,
        "size": args.size,
        "data_seed": args.data_seed,
        "pairs": len(protected),
        "epsilon": protected.epsilon,
        "trigger_len": protected.trigger_len,
        "config": protected.config,
        "seconds": protected.stats.get("seconds"),
        "bytes": protected.nbytes,
        "out": str(args.out),
        "export": None if args.export is None else str(args.export),
    }
    if args.json:
        _export(args, protected)
        print(json.dumps({**summary, "wall_seconds": time.perf_counter() - t0, "versions": versions()}))
        return 0
    eps = f"{protected.epsilon * 255:.0f}/255" if protected.epsilon else "-"
    print(
        f"protected {len(protected)} pairs of {args.dataset} ({args.size}) with {protected.method} "
        f"(epsilon {eps}, trigger {protected.trigger_len} tokens) in {summary['seconds']:.1f} s -> {args.out}"
    )
    _export(args, protected)
    return 0


def cmd_victim(args: argparse.Namespace) -> int:
    """Train a victim on a saved protection and print its clean-test retrieval beside chance."""
    source = read_protected_manifest(args.protected).get("source") or {}
    if "dataset" in source:
        need = DatasetRef.from_provenance(source).cache_root(args.data_dir)
        check_cache(default_data_dir(args.data_dir), [need], "--data-dir" if args.data_dir else "the dataset cache")
    config = VictimConfig(
        seed=args.seed,
        image_encoder=args.image_encoder,
        defence=args.defence,
        epochs=args.epochs,
        progress=not args.quiet,
        regime=args.regime,
        pretrain=args.pretrain,
        pretrain_epochs=args.pretrain_epochs,
        pretrain_data_seed=args.pretrain_data_seed,
        lr=args.lr,
    )
    protected, result = victim_from_dir(args.protected, config, data_dir=args.data_dir)
    record: RunRecord = result.record({"protected": str(args.protected), "source": protected.source.get("dataset")})
    if args.json:
        print(json.dumps(record.to_dict()))
        return 0
    print(
        f"victim ({config.regime}, seed {result.seed}, {config.image_encoder}, defence {config.defence}) trained on "
        f"{protected.method}-protected {protected.source.get('dataset')} in {result.seconds:.1f} s; clean test:"
    )
    print(retrieval_table(result.metrics))
    return 0


def retrieval_table(metrics: Sequence[MetricResult]) -> str:
    """Two rows (the victim and chance), one column per retrieval metric."""
    names = [m.name for m in metrics]
    return format_table(
        ["", *names], [["victim", *(m.value for m in metrics)], ["chance", *(m.chance for m in metrics)]]
    )


# -- parser -------------------------------------------------------------------------------------------
def add_commands(subparsers: Any) -> None:
    """Add ``protect`` and ``victim`` to the main parser's subparsers (``parser.add_subparsers(...)``)."""
    captions = [n for n in DATASETS.names() if "text" in getattr(DATASETS.get(n), "modalities", ())]
    p = subparsers.add_parser("protect", help="make a caption dataset unlearnable (noise + trigger)")
    p.add_argument(
        "--dataset", required=True, help=f"built-in caption dataset: {_known(captions)}; or a path with --layout"
    )
    p.add_argument(
        "--layout",
        choices=[n for n in LAYOUTS.names() if not n.startswith("av-")],
        default=None,
        help="--dataset is a path in this published image-caption layout (docs/data-layouts.md)",
    )
    p.add_argument(
        "--size", choices=SIZES, default="small", help=f"dataset size: {_known(SIZES)} (default: %(default)s)"
    )
    p.add_argument("--method", required=True, help=f"protector: {_known(PROTECTORS.names())}")
    p.add_argument("--out", required=True, help="folder for the protection (noise, triggers, manifest)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the protection of another run that --out holds (else refused)"
    )
    p.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="also write the protected dataset as publishable files in the input's layout (docs/data-layouts.md)",
    )
    p.add_argument("--epsilon", default=None, help="L-inf noise budget in pixel units, e.g. 0.0314 or 8/255")
    p.add_argument("--trigger-len", type=int, default=None, help="trigger tokens per caption")
    p.add_argument("--seed", type=int, default=None, help="protector seed (surrogate, draws)")
    p.add_argument("--data-seed", type=int, default=0, help="dataset generation seed (default: %(default)s)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any protector config field (repeatable)")
    _common(p)
    p.set_defaults(func=cmd_protect)

    p = subparsers.add_parser("victim", help="train a victim on a protected dataset, evaluate on clean test pairs")
    p.add_argument("--protected", required=True, help="folder written by `mmunlearn protect`")
    p.add_argument("--defence", default="none", help=f"defence: {_known(DEFENCES.names())} (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="victim seed (default: the surrogate's seed + 1)")
    p.add_argument("--image-encoder", default="cnn", help="victim image tower: cnn (the recipe's) or resnet")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the dataset recipe's)")
    p.add_argument(
        "--regime", default="scratch", choices=REGIMES,
        help="scratch (fresh recipe model), finetune (pretrained on another caption set) or hf-clip (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--pretrain", default=None, help="finetune: caption set to pretrain on (default: the target's other)"
    )
    p.add_argument("--pretrain-epochs", type=int, default=None, help="finetune: pretraining epochs (default: recipe's)")
    p.add_argument(
        "--pretrain-data-seed",
        type=int,
        default=None,
        help="finetune: data seed of the pretraining set (default 0); with another seed than the target's, "
        "--pretrain may name the target set itself (other pairs of the same generator)",
    )
    p.add_argument("--lr", type=float, default=None, help="peak lr (default: recipe's; finetune: recipe's / 10)")
    _common(p)
    p.set_defaults(func=cmd_victim)


def _known(names: Sequence[str]) -> str:
    """A help-string list of registered names, ``%``-escaped for argparse."""
    return (", ".join(names) or "(none)").replace("%", "%%")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="dataset cache root (default: $MMUNLEARN_DATA or the user cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or info logs")
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON record")
