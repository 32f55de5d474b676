"""The command-line interface: parse, build a config, call one library function, print.

Every command accepts ``--json`` where it reports figures; errors are one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import distributed as dist
from ..checkpoint import FORMAT as CHECKPOINT_FORMAT
from ..checkpoint import read_manifest
from ..data import DATASETS, LAYOUTS, SIZES, SPLITS, DatasetRef, build_dataset, load_dataset
from ..data.store import default_data_dir
from ..errors import CheckpointError, ConfigError, MMUnlearnError
from ..evaluate import evaluate
from ..forgetting import (
    RequestSpec,
    completed_forget,
    dataset_of,
    forget,
    make_unlearner,
    original_of,
    splits_for,
    splits_of,
)
from ..models import MODELS, DualEncoder
from ..models.protocols import kind_names
from ..outputs import (
    FORGET_RUN,
    check_cache,
    check_folder,
    check_output_folder,
    clear_output,
    inspect_folder,
    refuse_existing,
)
from ..overrides import parse_sets
from ..protectors import PROTECTORS
from ..recipes import MODEL_RECIPES, train_on_dataset
from ..records.scenarios import gap_to_retrain
from ..registry import Registry, UnknownNameError
from ..results import MetricResult, RunRecord
from ..runtime import configure_threads, resolve_device
from ..stages import STAGES
from ..textfmt import format_table
from ..unlearn import UNLEARNERS
from ..versions import versions
from .bench import add_commands as add_bench_commands
from .protect import add_commands as add_protect_commands
from .verify import add_commands as add_verify_commands

log = logging.getLogger("mmunlearn")


def registries() -> dict[str, Registry[Any]]:
    """Every registry ``mmunlearn list`` shows, by family name."""
    return {
        "datasets": DATASETS,
        "layouts": LAYOUTS,
        "models": MODELS,
        "unlearners": UNLEARNERS,
        "protectors": PROTECTORS,
    }


# -- commands ----------------------------------------------------------------------------------------
def method_table() -> dict[str, dict[str, Any]]:
    """Every method (unlearners and protectors): its family, intervention stage and supported model kinds."""
    out = {}
    for family, reg in (("unlearner", UNLEARNERS), ("protector", PROTECTORS)):
        for name in reg.names():
            cls: Any = reg.get(name)
            kinds = kind_names(getattr(cls, "requires", ()))
            out[name] = {"family": family, "stage": cls.stage, "model_kinds": kinds, "paper": cls.paper}
    return out


def cmd_list(args: argparse.Namespace) -> int:
    regs = {name: reg.names() for name, reg in registries().items()}
    methods = method_table()
    if args.json:
        print(json.dumps({**regs, "methods": methods}, sort_keys=True))
        return 0
    for name in ("datasets", "layouts", "models"):
        print(f"{name}: {', '.join(regs[name]) or '(none)'}")
    width = max(map(len, methods), default=0) + 1
    for stage in [s for s in STAGES if any(m["stage"] == s for m in methods.values())]:
        print(f"{stage}:")
        for name, m in methods.items():
            if m["stage"] == stage:
                print(f"  {name:<{width}} {m['family']:<10} models: {', '.join(m['model_kinds'])}")
    return 0


def check_data_dir(data_dir: str | None, *datasets: DatasetRef, rebuild: bool = False) -> None:
    """The dataset cache: a folder, writable when a dataset the command reads must be built (or ``rebuild``).

    Raises:
        ConfigError: see `mmunlearn.outputs.check_cache`.
    """
    flag = "--data-dir" if data_dir else "the dataset cache ($MMUNLEARN_DATA or the user cache)"
    check_cache(default_data_dir(data_dir), [ref.cache_root(data_dir) for ref in datasets], flag, rebuild=rebuild)


def dataset_arg(args: argparse.Namespace) -> DatasetRef | None:
    """The dataset ``--dataset``/``--layout``/``--size``/``--data-seed`` name (None without ``--dataset``)."""
    if getattr(args, "dataset", None) is None:
        if getattr(args, "layout", None) is not None:
            raise ConfigError("--layout needs --dataset PATH (the folder or file of the dataset on disk)")
        return None
    return DatasetRef.of(args.dataset, args.size, args.data_seed, args.layout, args.skip_bad)


def cmd_data_build(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    check_data_dir(args.data_dir, DatasetRef.of(args.name, args.size, args.seed), rebuild=args.force)
    path = build_dataset(args.name, args.size, args.seed, args.data_dir, force=args.force, progress=not args.quiet)
    splits = load_dataset(args.name, args.size, args.seed, args.data_dir)
    sizes = {s: len(splits.split(s)) for s in SPLITS}
    if args.json:
        print(json.dumps({"name": args.name, "size": args.size, "seed": args.seed, "path": str(path), "splits": sizes}))
    else:
        print(
            f"{args.name} ({args.size}, seed {args.seed}) at {path}: " + ", ".join(f"{k} {v}" for k, v in sizes.items())
        )
        print(f"ready in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_data_ids(args: argparse.Namespace) -> int:
    """The sample ids of one split (one per line) or its identity groups with their sizes."""
    check_data_dir(args.data_dir, DatasetRef.of(args.name, args.size, args.seed))
    dataset = load_dataset(args.name, args.size, args.seed, args.data_dir, progress=not args.quiet).split(args.split)
    groups = {kind: dict(sorted(Counter(names).items())) for kind, names in dataset.groups.items()}
    if args.json:
        record = {"dataset": args.name, "size": args.size, "seed": args.seed, "split": args.split}
        print(json.dumps({**record, "ids": dataset.ids, "groups": groups}))
    elif args.groups:
        if not groups:
            print(f"{args.name} ({args.size}) {args.split}: no identity groups")
            return 0
        print(format_table(["kind", "group", "samples"], [[k, g, n] for k, c in groups.items() for g, n in c.items()]))
    else:
        sys.stdout.write("".join(f"{sid}\n" for sid in dataset.ids))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    overrides = {
        k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}.items() if v is not None
    }
    device = str(resolve_device(args.device))
    found = check_output_folder(args.out, CHECKPOINT_FORMAT)
    ref = dataset_arg(args)
    assert ref is not None  # --dataset is required
    check_data_dir(args.data_dir, ref)
    if found.what == FORGET_RUN and not args.overwrite:
        refuse_existing(args.out, found)
    if args.overwrite:
        clear_output(args.out, found)
    result, metrics = train_on_dataset(
        args.dataset,
        args.out,
        size=args.size,
        seed=args.seed,
        data_seed=args.data_seed,
        data_dir=args.data_dir,
        overrides=overrides,
        device=device,
        progress=not args.quiet,
        layout=args.layout,
        init=args.init,
        model=args.model,
    )
    record = RunRecord(
        "train",
        result.model.kind,
        {"dataset": args.dataset, "size": args.size, **overrides},
        args.seed,
        metrics,
        result.seconds,
        versions(),
    )
    if args.json:
        print(json.dumps({**record.to_dict(), "out": str(args.out), "resumed_from_epoch": result.resumed_from}))
    else:
        print(
            f"trained {result.model.kind} on {args.dataset} ({args.layout or args.size}) in {result.seconds:.1f} s -> {args.out}"
        )
        print(metrics_table(metrics))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    device = str(resolve_device(args.device))
    data = dataset_arg(args)
    if data is None:
        check_data_dir(args.data_dir, dataset_of(read_manifest(args.model)))
    else:  # a model that records no data (a Hugging Face folder), or evaluated on other data
        check_data_dir(args.data_dir, data)
    model, manifest = original_of(args.model, dataset=data, data_dir=args.data_dir, device=device, replace=True)
    prov = manifest["provenance"]
    splits = splits_for(model, splits_of(manifest, args.data_dir))
    if isinstance(model, DualEncoder) and splits.vocab != model.tokenizer.vocab:
        raise CheckpointError(f"the tokenizer saved with {args.model} does not match dataset {splits.name!r}")
    chosen = {s: splits.split(s) for s in args.splits}
    metrics = evaluate(model, chosen)
    if args.json:
        print(
            json.dumps(
                {"model": str(args.model), "dataset": prov["dataset"], "metrics": [m.to_dict() for m in metrics]}
            )
        )
    else:
        print(metrics_table(metrics))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    out = check_folder(args.out, "--out")
    progress = not args.quiet and not args.json
    device = str(resolve_device(args.device))
    if inspect_folder(out).format is not None:
        raise ConfigError(f"--out {out} holds {inspect_folder(out).what}; the demo needs a folder of its own")
    check_data_dir(args.data_dir, DatasetRef.of("av-digits", args.size, 0))
    say = (lambda *_: None) if args.json else print
    say(f"mmunlearn demo: av-digits ({args.size}): train, forget the images of 10% of the training samples")
    say(f"with CCU, retrain from scratch without them, compare.  Outputs in {out}/")
    overrides = {"epochs": args.epochs} if args.epochs is not None else {}
    t0 = time.perf_counter()
    trained, _ = train_on_dataset(
        "av-digits", out / "original", size=args.size, seed=args.seed, data_dir=args.data_dir,
        overrides=overrides, device=device, progress=progress,
    )  # fmt: skip
    say(f"original trained in {trained.seconds:.1f} s")
    spec = RequestSpec(fraction=0.1, seed=args.seed, reason="mmunlearn demo")
    runs = {}
    for method in ("ccu", "retrain"):
        runs[method] = forget(
            out / "original", method, spec, out / method, seed=args.seed, data_dir=args.data_dir,
            device=device, progress=progress, original_metrics=method == "ccu",
        )  # fmt: skip
        say(f"{method} finished in {runs[method].seconds:.1f} s")
    original = runs["ccu"].original_metrics or []
    columns = {"original": original, **{k: v.metrics for k, v in runs.items()}}
    ratio = runs["ccu"].seconds / runs["retrain"].seconds
    gap = gap_to_retrain(runs["ccu"].metrics, runs["retrain"].metrics)
    wall = time.perf_counter() - t0
    if args.json:
        metrics = {name: [m.to_dict() for m in ms] for name, ms in columns.items()}
        seconds = {"train": trained.seconds, **{k: v.seconds for k, v in runs.items()}, "wall": wall}
        print(json.dumps({"out": str(out), "metrics": metrics, "seconds": seconds, "ccu_gap_to_retrain": gap}))
        return 0
    print(comparison_table(columns))
    print(f"CCU took {ratio:.1%} of retrain's time; gap to retrain {gap:.3f}")
    print(f"demo wall time {wall:.0f} s")
    return 0


def comparison_table(columns: dict[str, list[MetricResult]]) -> str:
    """One row per metric, one column per model."""
    keys = list(dict.fromkeys((m.name, m.split) for ms in columns.values() for m in ms))
    values = {name: {(m.name, m.split): m.value for m in ms} for name, ms in columns.items()}
    rows = [[f"{n} / {s}", *(values[c].get((n, s)) for c in columns)] for n, s in keys]
    return format_table(["metric / split", *columns], rows)


def cmd_forget(args: argparse.Namespace) -> int:
    spec = forget_spec(args)
    overrides = parse_sets(args.set or [])
    device = str(resolve_device(args.device))
    found = check_output_folder(args.out, CHECKPOINT_FORMAT, inputs=(args.model,))
    data = dataset_arg(args)
    own = args.model_factory is not None or data is not None
    if own:  # a user's module or a model that records no data: loaded now, to check it and name its data
        check_data_dir(args.data_dir, *([data] if data else []))
        manifest = original_of(args.model, factory=args.model_factory, dataset=data, data_dir=args.data_dir)[1]
    else:
        manifest = read_manifest(args.model)
    make_unlearner(args.method, manifest, args.seed, overrides, False)  # config checked before any work
    check_data_dir(args.data_dir, dataset_of(manifest))
    if found.format is not None and not args.overwrite and not own:
        done = completed_forget(
            args.out, args.model, args.method, spec, seed=args.seed, overrides=overrides, data_dir=args.data_dir
        )
        if done is None:
            refuse_existing(args.out, found)
        return print_complete(args, done)
    if args.overwrite:
        clear_output(args.out, found)
    result = forget(
        args.model,
        args.method,
        spec,
        args.out,
        seed=args.seed,
        overrides=overrides,
        data_dir=args.data_dir,
        device=device,
        progress=not args.quiet,
        original_metrics=True,
        sign_key=args.sign_key,
        factory=args.model_factory,
        dataset=data,
    )
    if args.json:
        before = [m.to_dict() for m in result.original_metrics or []]
        print(json.dumps({"out": str(args.out), **result.receipt, "original_metrics": before}))
    else:
        r = result.receipt["request"]
        print(
            f"{args.method}: forgot {'+'.join(r['modalities'])} of {r['n_ids']} samples in {result.seconds:.1f} s -> {args.out}"
        )
        print(comparison_table({"original": result.original_metrics or [], args.method: result.metrics}))
    return 0


def forget_spec(args: argparse.Namespace) -> RequestSpec:
    """The request the forget options name (checked, the ids file read, before any work)."""
    return RequestSpec(
        fraction=args.forget_fraction,
        ids_file=args.forget_ids,
        identities=tuple(args.forget_identity or ()),
        label=args.forget_class,
        concept=args.concept,
        modalities=None if args.modalities is None else tuple(args.modalities),
        reason=args.reason,
        seed=args.request_seed,
    )


def print_complete(args: argparse.Namespace, receipt: dict[str, Any]) -> int:
    """Report that ``--out`` already holds this very run, finished (nothing is run again)."""
    if args.json:
        print(json.dumps({"out": str(args.out), **receipt, "already_complete": True}))
        return 0
    print(f"{args.out} already holds this {args.method} run, complete; nothing to do (--overwrite runs it again)")
    print(comparison_table({args.method: [MetricResult(**m) for m in receipt.get("metrics", [])]}))
    return 0


# -- output ------------------------------------------------------------------------------------------
def metrics_table(metrics: Sequence[MetricResult]) -> str:
    """One row per split, one column per metric, and a last row with each metric's chance level."""
    names = list(dict.fromkeys(m.name for m in metrics))
    splits = list(dict.fromkeys(m.split for m in metrics))
    value = {(m.split, m.name): m.value for m in metrics}
    chance = {m.name: m.chance for m in metrics}
    rows: list[list[object]] = [[s, *(value.get((s, n)) for n in names)] for s in splits]
    rows.append(["chance", *(chance[n] for n in names)])
    return format_table(["split", *names], rows)


# -- parser ------------------------------------------------------------------------------------------
def known(names: Sequence[str]) -> str:
    """A help-string list of registered names, ``%``-escaped for argparse."""
    return (", ".join(names) or "(none)").replace("%", "%%")


def _common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("--data-dir", default=None, help="dataset cache root (default: $MMUNLEARN_DATA or the user cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or info logs")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one machine-readable JSON record")


def _size(p: argparse.ArgumentParser, default: str = "small") -> None:
    p.add_argument(
        "--size", choices=SIZES, default=default, help=f"dataset size: {known(SIZES)} (default: %(default)s)"
    )


def _data_source(p: argparse.ArgumentParser) -> None:
    """``--layout``, ``--size`` and ``--data-seed``: what ``--dataset`` names."""
    p.add_argument(
        "--layout",
        choices=LAYOUTS.names(),
        default=None,
        help=f"--dataset is a path in this published layout: {known(LAYOUTS.names())} (docs/data-layouts.md)",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="with --layout: skip unreadable images and sounds (they are listed) instead of stopping",
    )
    _size(p)
    p.add_argument(
        "--data-seed", type=int, default=0, help="dataset generation seed, or the split seed on disk (default: 0)"
    )


def _device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ... (default: %(default)s)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (registered names are listed in the help as built now)."""
    parser = argparse.ArgumentParser(
        prog="mmunlearn", description="Multimodal machine unlearning and unlearnable examples."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    datasets = known(DATASETS.names())

    p = sub.add_parser("list", help="list every registry (datasets, models, ...)")
    p.add_argument("--json", action="store_true", help="print the registries as one JSON object")
    p.set_defaults(func=cmd_list)

    data = sub.add_parser("data", help="built-in datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("build", help="build a built-in dataset into the cache (verified by checksum)")
    p.add_argument("name", help=f"built-in dataset: {datasets}")
    _size(p)
    p.add_argument("--seed", type=int, default=0, help="dataset generation seed (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="rebuild even if a verified cache exists")
    _common(p)
    p.set_defaults(func=cmd_data_build)

    p = data.add_parser(
        "ids",
        help="list the sample ids (or identity groups) of a built-in dataset's split",
        description="Print the sample ids of one split, one per line (a file for `mmunlearn forget --forget-ids`), "
        "or with --groups every identity group with its number of samples (names for --forget-identity). "
        "The dataset is built on first use.",
    )
    p.add_argument("name", help=f"built-in dataset: {datasets}")
    _size(p)
    p.add_argument("--seed", type=int, default=0, help="dataset generation seed (default: %(default)s)")
    p.add_argument("--split", choices=SPLITS, default="train", help=f"split: {known(SPLITS)} (default: %(default)s)")
    p.add_argument(
        "--groups", action="store_true", help="list the identity groups (kind, name, samples) instead of the ids"
    )
    p.add_argument("--data-dir", default=None, help="dataset cache root (default: $MMUNLEARN_DATA or the user cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bar while the dataset is built")
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"dataset", "size", "seed", "split", "ids": [...], "groups": {kind: {name: count}}}',
    )
    p.set_defaults(func=cmd_data_ids)

    p = sub.add_parser("train", help="train the recipe model of a built-in dataset or of a dataset on disk")
    p.add_argument("--dataset", required=True, help=f"built-in dataset: {datasets}; or a path with --layout")
    _data_source(p)
    p.add_argument(
        "--init",
        metavar="FOLDER",
        help="train this model instead of the recipe's fresh one: our checkpoint or a Hugging Face "
        "save_pretrained folder (CLIP, SigLIP, CLAP)",
    )
    p.add_argument(
        "--model",
        choices=sorted(MODEL_RECIPES),
        default=None,
        help="train this model's recipe instead of the dataset's own model (captioner: a generative image "
        "captioner of a caption set)",
    )
    p.add_argument("--out", required=True, help="checkpoint folder (an unfinished run there is resumed)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the checkpoint --out holds instead of resuming or refusing"
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the dataset recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per step (default: the dataset recipe's)")
    p.add_argument("--lr", type=float, default=None, help="(peak) learning rate (default: the dataset recipe's)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    _device(p)
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on its dataset (or on --dataset)")
    p.add_argument("--model", required=True, help="checkpoint folder, or a Hugging Face save_pretrained folder")
    p.add_argument(
        "--dataset",
        default=None,
        help="evaluate on this dataset instead of the one the checkpoint records (needed for a Hugging Face "
        "folder): a built-in name, or a path with --layout",
    )
    _data_source(p)
    p.add_argument(
        "--splits",
        nargs="+",
        choices=SPLITS,
        default=["train", "test"],
        metavar="SPLIT",
        help=f"splits to evaluate on: any of {known(SPLITS)} (default: train test)",
    )
    _device(p)
    _common(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("forget", help="make a trained classifier or dual encoder forget part of its training data")
    p.add_argument(
        "--model",
        required=True,
        help="the original model: our checkpoint folder, a Hugging Face save_pretrained folder (CLIP, SigLIP, "
        "CLAP), or with --model-factory a safetensors weights file",
    )
    p.add_argument(
        "--model-factory",
        metavar="MODULE:FUNCTION",
        help="build your own PyTorch module with this function (importable, no arguments); --model is then its "
        "safetensors weights and --dataset its training data",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="the training data of a model that records none (--model-factory, a Hugging Face folder): a "
        "built-in name, or a path with --layout",
    )
    _data_source(p)
    p.add_argument("--method", required=True, help=f"unlearning method: {known(UNLEARNERS.names())}")
    sel = p.add_mutually_exclusive_group(required=True)
    sel.add_argument("--forget-fraction", type=float, help="a seeded random share of the training samples, in (0, 1)")
    sel.add_argument(
        "--forget-ids", help="text file with one sample id per line (`mmunlearn data ids NAME` lists them)"
    )
    sel.add_argument(
        "--forget-identity",
        nargs="+",
        metavar="GROUP",
        help="identity groups: fonts, writers, voices (`mmunlearn data ids NAME --groups` lists them)",
    )
    sel.add_argument(
        "--group",
        nargs="+",
        dest="forget_identity",
        metavar="GROUP",
        help="groups of an image-caption set: every pair built from one emoji on emoji-captions (same as "
        "--forget-identity)",
    )
    sel.add_argument("--forget-class", type=int, help="every sample of one class")
    sel.add_argument(
        "--concept", help="every image-caption pair whose caption names this concept, e.g. 'red circle' or 'red apple'"
    )
    p.add_argument(
        "--modalities",
        nargs="+",
        default=None,
        metavar="MODALITY",
        help="modalities to forget: any the model has (image, audio, ...), or 'all' for full deletion "
        "(default: a classifier's images; both modalities of image-caption pairs)",
    )
    p.add_argument("--out", required=True, help="folder for the new checkpoint, metrics and receipt")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the checkpoint of another run that --out holds (else refused)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the method (default: %(default)s)")
    p.add_argument("--request-seed", type=int, default=0, help="seed of a random --forget-fraction selection")
    p.add_argument("--reason", default="", help="recorded in the receipt")
    p.add_argument("--sign-key", metavar="FILE", help="sign the receipt: HMAC-SHA256 keyed with this file's bytes")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a field of the method's config, e.g. epochs=1 (repeatable)",
    )
    _device(p)
    _common(p)
    p.set_defaults(func=cmd_forget)

    add_protect_commands(sub)
    add_bench_commands(sub)
    add_verify_commands(sub)

    p = sub.add_parser("demo", help="train on av-digits, forget 10%% of its images with CCU, retrain, compare")
    _size(p, default="full")
    p.add_argument("--out", default="runs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs of the original (default: the recipe's)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of training, the request and both methods (default: %(default)s)"
    )
    _device(p)
    _common(p)
    p.set_defaults(func=cmd_demo)
    return parser


def _setup_logging(quiet: bool) -> None:
    """Library logs (info, or warnings only with --quiet) go to the current stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    log.handlers = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


PARALLEL_COMMANDS = ("train", "forget", "victim")
"""The commands that run data-parallel under torchrun (docs/distributed.md)."""


def join_torchrun(args: argparse.Namespace) -> Path | None:
    """Under torchrun (docs/distributed.md): join the process group and take this rank's device; rank 0
    builds the dataset first; the other ranks get a private --out (returned, to delete), no progress and no
    printed output, so that only rank 0 writes the real folder and prints. Without torchrun: nothing, None."""
    if not dist.launched():
        return None
    if args.command not in PARALLEL_COMMANDS:
        raise ConfigError(
            f"under torchrun only {', '.join(f'`{c}`' for c in PARALLEL_COMMANDS)} run data-parallel, not "
            f"{args.command!r}"
        )
    args.device = dist.init_from_env(getattr(args, "device", "cpu"))  # a victim trains on the CPU
    os.environ.setdefault("MMUNLEARN_THREADS", os.environ.get("OMP_NUM_THREADS") or "1")  # torchrun sets 1
    if dist.is_main() and args.command != "victim":  # a victim's data must be in the cache already
        _build_data_first(args)
    dist.barrier()
    if dist.is_main():
        return None
    private = Path(tempfile.mkdtemp(prefix=f"mmunlearn-rank{dist.rank()}-"))
    args.out, args.quiet = str(private / "out"), True
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the rest of the process)
    return private


def _build_data_first(args: argparse.Namespace) -> None:
    """Build (or decode) the command's dataset into the cache, so that the ranks do not build it at once.

    Errors are left to the command itself, which reports them the same way with or without torchrun.
    """
    try:
        ref = dataset_arg(args)
        if ref is None and getattr(args, "model_factory", None) is None:
            ref = dataset_of(read_manifest(args.model))
        if ref is not None:
            ref.load(args.data_dir, progress=not args.quiet)
    except MMUnlearnError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 2 a user error, printed as one line on stderr)."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by bench and report
    private = None
    try:
        private = join_torchrun(args)
        _setup_logging(getattr(args, "quiet", False))
        if getattr(args, "threads", None) is None:
            configure_threads()  # one thread per idle core (bench --threads sets its own)
        return int(args.func(args))
    except (MMUnlearnError, UnknownNameError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, NotADirectoryError) as e:  # the checks above missed a path
        print(f"error: {e.strerror}: {e.filename}", file=sys.stderr)
        return 2
    finally:
        dist.shutdown()
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)


def entry() -> None:
    """Console-script entry point. A closed pipe (``mmunlearn list | head -1``) ends quietly with status 141."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        code = 141
    sys.exit(code)
