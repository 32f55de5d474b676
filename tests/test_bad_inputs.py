"""Every bad input is refused before any work, through the real CLI.

Each case of `CASES` runs ``mmunlearn ...`` in-process in a temporary folder and must end with exit code
2, exactly one ``error:`` line on stderr that names the bad value, no traceback, and the output location
exactly as it was (nothing created, nothing changed). The cases are the bad inputs of issue 12 (the
tracebacks and the data-loss cases) and more of the same families.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mmunlearn.cli import main
from mmunlearn.data.store import cache_path
from mmunlearn.recipes import train_on_dataset
from mmunlearn.records.scenarios import HEADLINE
from mmunlearn.records.store import ResultStore
from mmunlearn.reporting import README_BEGIN, README_END
from mmunlearn.results import MetricResult, RunRecord

BENCH_OK = """\
name: bad
grids:
  - scenario: unlearn
    dataset: av-digits
    size: small
    seeds: [0]
    methods: [finetune]
    train: {epochs: 1}
"""
BENCH_PROTECT = """\
name: bad
grids:
  - scenario: protect
    dataset: shapes-captions
    size: small
    protectors: [mem]
"""


# -- module artefacts (built once) -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def artefacts(tmp_path_factory, data_cache) -> dict[str, Path]:
    """A trained checkpoint, a protection, a copy of a dataset cache and a forget run of another request."""
    root = tmp_path_factory.mktemp("bad-inputs")
    model = root / "model"
    train_on_dataset("av-digits", model, size="small", overrides={"epochs": 1}, progress=False, data_dir=data_cache)
    protection = root / "protection"
    argv = ["protect", "--dataset", "shapes-captions", "--method", "random_noise", "--out", str(protection)]
    assert main([*argv, "--data-dir", str(data_cache), "--quiet"]) == 0
    dataset = root / "dataset-cache"
    shutil.copytree(cache_path("shapes-captions", "small", 0, data_cache), dataset)
    forget_run = copy_checkpoint(model, root / "forget-run", unlearned={"method": "ccu", "request": {}})
    (forget_run / "receipt.json").write_text("{}\n")
    edited = copy_checkpoint(model, root / "edited", dataset="shapes-captions")
    unknown = copy_checkpoint(model, root / "unknown-dataset", dataset="nope")
    return {"model": model, "protection": protection, "dataset": dataset, "forget_run": forget_run,
            "edited": edited, "unknown": unknown}  # fmt: skip


def copy_checkpoint(model: Path, out: Path, **provenance: object) -> Path:
    """A copy of a checkpoint with provenance fields changed (the manifest hashes only the model config)."""
    shutil.copytree(model, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["provenance"].update(provenance)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


# -- per-test inputs (made on first use) ---------------------------------------------------------------
class World(dict):
    """``{name}`` placeholders of a case: module artefacts, or small inputs made in ``tmp`` when first named."""

    def __init__(self, tmp: Path, artefacts: dict[str, Path]) -> None:
        super().__init__({k: str(v) for k, v in artefacts.items()}, tmp=str(tmp))
        self.tmp = tmp

    def __missing__(self, key: str) -> str:
        path = getattr(self, f"make_{key}")(self.tmp / key)
        self[key] = str(path)
        return str(path)

    def make_file(self, p: Path) -> Path:
        p.write_text("a file, not a folder\n")
        return p

    def make_locked(self, p: Path) -> Path:
        p.mkdir()
        p.chmod(0o555)  # read-only; `unwritable` below makes it so for root as well
        return p

    def make_foreign(self, p: Path) -> Path:
        p.mkdir()
        (p / "notes.txt").write_text("mine\n")
        return p

    def make_trained(self, p: Path) -> Path:
        return Path(shutil.copytree(self["model"], p))

    def make_dir(self, p: Path) -> Path:
        p.mkdir()
        return p

    def make_binary(self, p: Path) -> Path:
        p.write_bytes(b"\x00\x01\x02PNG\x89\xff" * 8)
        return p

    def make_latin1(self, p: Path) -> Path:
        p.write_bytes(BENCH_OK.replace("name: bad", "name: caf\u00e9").encode("latin-1"))
        return p

    def make_ids_latin1(self, p: Path) -> Path:
        p.write_bytes("train-0001\ncaf\u00e9-0002\n".encode("latin-1"))
        return p

    def make_store(self, p: Path) -> Path:
        """A results store with one valid record (the report fails on its arguments, not on the store)."""
        extras = {"cell": "c0", "row": "retrain", "dataset": "av-digits", "size": "small", "setting": "random"}
        metrics = [MetricResult(name, split, 0.5) for name, split in HEADLINE]
        ResultStore(p).append(RunRecord("unlearn", "retrain", {}, 0, metrics, 1.0, {}, {**extras, "status": "ok"}))
        return p

    def make_readme(self, p: Path) -> Path:
        p.write_text("# A README without the report markers\n")
        return p

    def __getattr__(self, name: str):
        if name.startswith("make_yaml_"):  # make_yaml_<variant>: a bench config
            return lambda p: self._yaml(p, YAMLS[name.removeprefix("make_yaml_")])
        raise AttributeError(name)

    def _yaml(self, p: Path, text: str) -> Path:
        p = p.with_suffix(".yaml")
        p.write_text(text)
        return p


YAMLS = {
    "ok": BENCH_OK,
    "negative_seed": BENCH_OK.replace("seeds: [0]", "seeds: [-1]"),
    "fraction_seed": BENCH_OK.replace("seeds: [0]", "seeds: [1.5]"),
    "epochs_word": BENCH_OK + "    overrides: {finetune: {epochs: many}}\n",
    "lr_word": BENCH_OK + "    overrides: {finetune: {lr: fast}}\n",
    "train_fraction": BENCH_OK.replace("train: {epochs: 1}", "train: {epochs: 1.5}"),
    "variant_bool": BENCH_OK + '    variants: {"ft x": {method: finetune, batch_size: yes}}\n',
    "fraction": BENCH_OK + "    fraction: 1.5\n",
    "protect_iters": BENCH_PROTECT + "    overrides: {mem: {outer_iters: 1.5}}\n",
    "victim_encoder": BENCH_PROTECT + "    victims: [{image_encoder: 5}]\n",
    "victim_epochs": BENCH_PROTECT + "    victim_epochs: true\n",
}


@pytest.fixture
def unwritable(monkeypatch):
    """Make ``os.access`` honour a read-only folder for root too (root may write anywhere)."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and "locked" in Path(os.path.abspath(path)).parts:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


# -- the cases ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One bad input: the command line, the text the error must contain, and what must stay as it was."""

    argv: str
    names: str
    watch: tuple[str, ...] = ("{tmp}/out",)


FORGET = "forget --model {model} --method ccu --forget-fraction 0.1 --out {tmp}/out --quiet"
TRAIN = "train --dataset av-digits --out {tmp}/out --epochs 1 --quiet"
PROTECT = "protect --dataset shapes-captions --method random_noise --out {tmp}/out --quiet"
BENCH = "bench {yaml_ok} --store {tmp}/out/results.jsonl --work {tmp}/out --quiet"
BENCH_YAML = "bench {} --store {{tmp}}/out/results.jsonl --work {{tmp}}/out --quiet"
REPORT = "report {store} --out {tmp}/out --quiet"
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
DATA = ("{tmp}/out", "{dataset}")

CASES = {
    # config values: --set, flags (type, then range)
    "set lr=fast": Case(f"{FORGET} --set lr=fast", "lr must be a number, got 'fast'"),
    "set epochs=many": Case(f"{FORGET} --set epochs=many", "epochs must be an integer, got 'many'"),
    "set epochs=1.5": Case(f"{FORGET} --set epochs=1.5", "epochs must be an integer, got 1.5"),
    "set seed=abc": Case(f"{FORGET} --set seed=abc", "seed must be an integer, got 'abc'"),
    "set grad_clip=abc": Case(f"{FORGET} --set grad_clip=abc", "grad_clip must be a number or null, got 'abc'"),
    "set batch_size=2.5": Case(f"{FORGET} --set batch_size=2.5", "batch_size must be an integer, got 2.5"),
    "set use_a=maybe": Case(f"{FORGET} --set use_a=maybe", "use_a must be true or false, got 'maybe'"),
    "set lr=[1,2]": Case(f"{FORGET} --set lr=[1,2]", "lr must be a number, got [1, 2]"),
    "set epochs=true": Case(f"{FORGET} --set epochs=true", "epochs must be an integer, got True"),
    "set batch_size=0": Case(f"{FORGET} --set batch_size=0", "batch_size must be >= 1, got 0"),
    "set retain_batch_size=0": Case(f"{FORGET} --set retain_batch_size=0", "retain_batch_size must be >= 1, got 0"),
    "set seed=-1": Case(f"{FORGET} --set seed=-1", "seed must be >= 0, got -1"),
    "forget --seed -1": Case(f"{FORGET} --seed -1", "seed must be >= 0, got -1"),
    "forget --request-seed -1": Case(f"{FORGET} --request-seed -1", "--request-seed must be >= 0, got -1"),
    "forget --forget-fraction 0": Case(FORGET.replace("0.1", "0"), "forget fraction must be in (0, 1), got 0.0"),
    "forget --forget-class -1": Case(FORGET.replace("--forget-fraction 0.1", "--forget-class -1"), "got -1"),
    "train --batch-size 0": Case(f"{TRAIN} --batch-size 0", "batch_size must be >= 1, got 0"),
    "train --epochs -1": Case(f"{TRAIN} --epochs -1", "epochs must be >= 0, got -1"),
    "train --seed -1": Case(f"{TRAIN} --seed -1", "seed must be >= 0, got -1"),
    "protect --set epsilon=big": Case(f"{PROTECT} --set epsilon=big", "epsilon must be a number, got 'big'"),
    "protect --set outer_iters=1.5": Case(
        PROTECT.replace("random_noise", "mem") + " --set outer_iters=1.5", "outer_iters must be an integer, got 1.5"
    ),
    "protect --seed -1": Case(f"{PROTECT} --seed -1", "seed must be an integer >= 0, got -1"),
    "protect --data-seed -1": Case(f"{PROTECT} --data-seed -1", "--data-seed must be >= 0, got -1"),
    "victim --seed -1": Case("victim --protected {protection} --seed -1 --quiet", "seed must be >= 0, got -1", ()),
    "data build --seed -1": Case(
        "data build av-digits --seed -1 --data-dir {tmp}/out --quiet", "seed must be non-negative, got -1"
    ),
    # devices
    "--device bogus": Case(f"{FORGET} --device bogus", "unknown device 'bogus'"),
    "--device meta": Case(f"{TRAIN} --device meta", "unknown device 'meta'"),
    "--device cuda without CUDA": pytest.param(Case(f"{TRAIN} --device cuda", "device 'cuda'"), marks=NO_CUDA),
    "--device cuda:3 without CUDA": pytest.param(
        Case("eval --model {model} --device cuda:3 --quiet", "device 'cuda:3'", ("{model}",)), marks=NO_CUDA
    ),
    # output paths
    "forget --out a file": Case(FORGET.replace("{tmp}/out", "{file}"), "file is a file", ("{file}",)),
    "train --out a file": Case(TRAIN.replace("{tmp}/out", "{file}"), "file is a file", ("{file}",)),
    "protect --out a file": Case(PROTECT.replace("{tmp}/out", "{file}"), "file is a file", ("{file}",)),
    "demo --out a file": Case("demo --out {file} --quiet", "file is a file", ("{file}",)),
    "forget --out unwritable": Case(
        FORGET.replace("{tmp}/out", "{locked}/out"), "locked is not writable", ("{locked}",)
    ),
    "train --out unwritable": Case(TRAIN.replace("{tmp}/out", "{locked}/out"), "locked is not writable", ("{locked}",)),
    "protect --out unwritable": Case(
        PROTECT.replace("{tmp}/out", "{locked}/out"), "locked is not writable", ("{locked}",)
    ),
    "bench --store unwritable": Case(
        "bench {yaml_ok} --store {locked}/r.jsonl --work {tmp}/out --quiet", "locked is not writable", ("{locked}",)
    ),
    "data build --data-dir unwritable": Case(
        "data build av-digits --data-dir {locked}/cache --quiet", "locked is not a writable folder", ("{locked}",)
    ),
    "forget --data-dir a file": Case(f"{FORGET} --data-dir {{file}}", "file is a file", ("{tmp}/out", "{file}")),
    "bench --store a folder": Case(
        "bench {yaml_ok} --store {dir} --work {tmp}/out --quiet", "dir is a folder, not a file", ("{tmp}/out", "{dir}")
    ),
    "bench --work a file": Case("bench {yaml_ok} --work {file} --quiet", "file is a file", ("{file}",)),
    "report --out a file": Case(REPORT.replace("{tmp}/out", "{file}"), "file is a file", ("{file}",)),
    "report store a folder": Case("report {dir} --out {tmp}/out --quiet", "dir is a folder", ("{tmp}/out", "{dir}")),
    "report --readme without markers": Case(f"{REPORT} --readme {{readme}}", README_BEGIN, ("{tmp}/out", "{readme}")),
    "report --readme missing": Case(f"{REPORT} --readme {{tmp}}/README.md", "README.md not found"),
    "report --readme binary": Case(
        f"{REPORT} --readme {{binary}}", "binary is a binary file", ("{tmp}/out", "{binary}")
    ),
    # never overwrite what is not yours
    "forget --out = --model": Case(
        FORGET.replace("{tmp}/out", "{trained}").replace("{model}", "{trained}"),
        "would overwrite the input",
        ("{trained}",),
    ),
    "forget --out inside --model": Case(
        FORGET.replace("{tmp}/out", "{trained}/sub").replace("{model}", "{trained}"), "trained/sub", ("{trained}",)
    ),
    "forget --out a trained checkpoint": Case(
        FORGET.replace("{tmp}/out", "{trained}"), "holds a trained checkpoint that is not this run's", ("{trained}",)
    ),
    "forget --out another forget run": Case(
        FORGET.replace("{tmp}/out", "{forget_run}"), "holds the output of a forget run", ("{forget_run}",)
    ),
    "forget --out a protection": Case(
        FORGET.replace("{tmp}/out", "{protection}"), "holds a protection", ("{protection}",)
    ),
    "forget --out a dataset cache": Case(
        FORGET.replace("{tmp}/out", "{dataset}"), "holds a dataset cache", ("{dataset}",)
    ),
    "forget --out a folder of other files": Case(
        FORGET.replace("{tmp}/out", "{foreign}"), "did not write (notes.txt)", ("{foreign}",)
    ),
    "protect --out a checkpoint": Case(
        PROTECT.replace("{tmp}/out", "{trained}"), "holds a trained checkpoint", ("{trained}",)
    ),
    "protect --out a dataset cache": Case(PROTECT.replace("{tmp}/out", "{dataset}"), "holds a dataset cache", DATA),
    "train --out a protection": Case(
        TRAIN.replace("{tmp}/out", "{protection}"), "holds a protection", ("{protection}",)
    ),
    "train --out a forget run": Case(
        TRAIN.replace("{tmp}/out", "{forget_run}"), "holds the output of a forget run", ("{forget_run}",)
    ),
    "report --out a checkpoint": Case(
        REPORT.replace("{tmp}/out", "{trained}"), "holds a trained checkpoint", ("{trained}",)
    ),
    "demo --out a checkpoint": Case("demo --out {trained} --quiet", "holds a trained checkpoint", ("{trained}",)),
    "train --out a checkpoint of another run": Case(
        TRAIN.replace("{tmp}/out", "{trained}") + " --seed 5", "of a different run", ("{trained}",)
    ),
    "forget --out a protection --overwrite": Case(
        FORGET.replace("{tmp}/out", "{protection}") + " --overwrite", "holds a protection", ("{protection}",)
    ),
    "forget --out under a file": Case(FORGET.replace("{tmp}/out", "{file}/out"), "file is a file", ("{file}",)),
    "eval --model missing": Case("eval --model {tmp}/none --quiet", "none is not a checkpoint", ("{tmp}/none",)),
    "report store missing": Case("report {tmp}/none.jsonl --out {tmp}/out --quiet", "none.jsonl"),
    # bench configs and flags
    "bench seeds [-1]": Case(BENCH_YAML.format("{yaml_negative_seed}"), "seeds must be integers >= 0, got -1"),
    "bench seeds [1.5]": Case(BENCH_YAML.format("{yaml_fraction_seed}"), "[1.5]"),
    "bench --threads -1": Case(f"{BENCH} --threads -1", "threads must be an integer >= 1, got -1"),
    "bench --threads 0": Case(f"{BENCH} --threads 0", "threads must be an integer >= 1, got 0"),
    "bench config binary": Case(BENCH_YAML.format("{binary}"), "binary is a binary file"),
    "bench config Latin-1": Case(BENCH_YAML.format("{latin1}"), "latin1 is not UTF-8 text"),
    "bench config a folder": Case(BENCH_YAML.format("{dir}"), "dir is a folder, not a file"),
    "bench overrides epochs: many": Case(
        BENCH_YAML.format("{yaml_epochs_word}"), "epochs must be an integer, got 'many'"
    ),
    "bench overrides lr: fast": Case(BENCH_YAML.format("{yaml_lr_word}"), "lr must be a number, got 'fast'"),
    "bench train epochs: 1.5": Case(BENCH_YAML.format("{yaml_train_fraction}"), "epochs must be an integer, got 1.5"),
    "bench variant batch_size: yes": Case(
        BENCH_YAML.format("{yaml_variant_bool}"), "batch_size must be an integer, got True"
    ),
    "bench fraction: 1.5": Case(BENCH_YAML.format("{yaml_fraction}"), "fraction must be a number in (0, 1), got 1.5"),
    "bench protector outer_iters: 1.5": Case(
        BENCH_YAML.format("{yaml_protect_iters}"), "outer_iters must be an integer, got 1.5"
    ),
    "bench victim image_encoder: 5": Case(
        BENCH_YAML.format("{yaml_victim_encoder}"), "image_encoder must be a string, got 5"
    ),
    "bench victim_epochs: true": Case(BENCH_YAML.format("{yaml_victim_epochs}"), "got True"),
    # ids files
    "ids file binary": Case(
        FORGET.replace("--forget-fraction 0.1", "--forget-ids {binary}"), "binary is a binary file"
    ),
    "ids file Latin-1": Case(FORGET.replace("--forget-fraction 0.1", "--forget-ids {ids_latin1}"), "is not UTF-8 text"),
    "ids file a folder": Case(FORGET.replace("--forget-fraction 0.1", "--forget-ids {dir}"), "dir is a folder"),
    "ids file missing": Case(
        FORGET.replace("--forget-fraction 0.1", "--forget-ids {tmp}/none.txt"), "none.txt not found"
    ),
    # checkpoints whose provenance names another dataset: refused before that dataset is built
    "eval provenance of another dataset": Case(
        "eval --model {edited} --quiet", "names dataset 'shapes-captions'", ("{edited}",)
    ),
    "forget provenance of another dataset": Case(
        FORGET.replace("{model}", "{edited}"), "names dataset 'shapes-captions'", ("{tmp}/out", "{edited}")
    ),
    "eval provenance of an unknown dataset": Case("eval --model {unknown} --quiet", "'nope'", ("{unknown}",)),
}


def snapshot(path: Path) -> dict[str, str] | None:
    """Every file and folder under ``path`` with the SHA-256 of its bytes (None: nothing there)."""
    if not path.exists():
        return None
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(path.rglob("*"))
    }


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_error_line_before_any_work(case, artefacts, tmp_path, capsys, unwritable):
    world = World(tmp_path, artefacts)
    argv = [arg.format_map(world) for arg in case.argv.split()]
    watched = [Path(w.format_map(world)) for w in case.watch]
    before = [snapshot(p) for p in watched]
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert case.names.format_map(world) in lines[0]
    assert "Traceback" not in out + err
    assert [snapshot(p) for p in watched] == before  # nothing created, changed or removed


# -- deliberate replacement and completed runs ----------------------------------------------------------
def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_forget_again_is_complete_another_request_needs_overwrite(artefacts, tmp_path, capsys):
    out = tmp_path / "ft"
    base = ["forget", "--model", str(artefacts["model"]), "--method", "finetune", "--out", str(out)]
    first = [*base, "--forget-fraction", "0.1", "--set", "epochs=0", "--quiet"]
    assert run(capsys, *first)[0] == 0
    done = snapshot(out)
    code, stdout, _ = run(capsys, *first)
    assert code == 0 and "already holds this finetune run, complete" in stdout and snapshot(out) == done
    other = [*base, "--forget-fraction", "0.2", "--set", "epochs=0", "--quiet"]
    code, _, err = run(capsys, *other)
    assert code == 2 and "pass --overwrite" in err and snapshot(out) == done
    code, stdout, _ = run(capsys, *other, "--overwrite", "--json")
    assert code == 0 and json.loads(stdout)["request"]["n_ids"] == 120
    assert json.loads((out / "receipt.json").read_text())["request"]["n_ids"] == 120


def test_protect_again_is_complete_another_config_needs_overwrite(artefacts, tmp_path, capsys):
    out = tmp_path / "p"
    shutil.copytree(artefacts["protection"], out)
    base = ["protect", "--dataset", "shapes-captions", "--method", "random_noise", "--out", str(out), "--quiet"]
    done = snapshot(out)
    code, stdout, _ = run(capsys, *base)
    assert code == 0 and "already holds this random_noise protection" in stdout and snapshot(out) == done
    code, _, err = run(capsys, *base, "--seed", "3")
    assert code == 2 and "pass --overwrite" in err and snapshot(out) == done
    assert run(capsys, *base, "--seed", "3", "--overwrite")[0] == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 3


def test_the_report_store_of_the_cases_is_valid(tmp_path, capsys):
    """The report cases fail on their arguments: with a good README the same store makes a report."""
    world = World(tmp_path, {})
    readme = tmp_path / "GOOD.md"
    readme.write_text(f"# x\n{README_BEGIN}\n{README_END}\n")
    code, _, err = run(capsys, "report", world["store"], "--out", str(tmp_path / "out"), "--readme", str(readme))
    assert code == 0, err
    assert (tmp_path / "out" / "report.md").is_file() and "| retrain" in readme.read_text()
