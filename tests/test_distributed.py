"""Data-parallel training and unlearning under torchrun (`mmunlearn.distributed`).

The unit tests run in this process, without torchrun: `shard`, and that the loops are exactly what they
were (no process group, no wrapper, bit-identical weights against a naive reference loop). The `slow`
tests launch two CPU processes with ``python -m torch.distributed.run --standalone --nproc_per_node 2``:

* this file as a script (`worker`): `train_model` and the unlearning loop on a toy set with a model that
  draws nothing at random (modality dropout off), against one process at the same global batch: equal
  up to float summation order (measured: max |dw| ~1e-7; tolerance 1e-5); the two ranks' weights bit-identical;
  a run interrupted mid-epoch and resumed under torchrun bit-identical to an uninterrupted torchrun run;
* the CLI: ``train`` and ``forget --method neggrad_plus`` under torchrun against one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmunlearn import distributed as dist
from mmunlearn.errors import ConfigError
from mmunlearn.models import build_model
from mmunlearn.optim import optimizer_for, optimizer_step, set_lr
from mmunlearn.runtime import epoch_batches, seeded
from mmunlearn.train import TrainConfig, lr_at, train_model

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
FAST = TrainConfig(epochs=3, batch_size=16, lr=3e-3, seed=3, progress=False)
FORGET = {"epochs": 2, "lr": 3e-3, "batch_size": 8, "retain_batch_size": 16, "progress": False}
TOL = 1e-5  # one process vs two at the same global batch, deterministic model: float summation order only
STAT_TOL = 0.1  # the CLI runs: accuracies of one process vs two, whose modality-dropout draws differ


# -- unit tests, one process -----------------------------------------------------------------------
@pytest.mark.parametrize(("n", "world", "sizes"), [(8, 2, [4, 4]), (10, 4, [3, 3, 2, 2]), (5, 5, [1] * 5)])
def test_shard_is_contiguous_equal_and_covers_the_batch(n: int, world: int, sizes: list[int]) -> None:
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    parts = [dist.shard(idx, r, world) for r in range(world)]
    assert [len(p) for p in parts] == sizes
    assert torch.equal(torch.cat(parts), idx)  # in rank order: the global batch, in its order


def test_shard_refuses_fewer_samples_than_ranks() -> None:
    with pytest.raises(ConfigError, match="cannot be split over 3 processes"):
        dist.shard(torch.arange(2), 0, 3)


def test_shard_weight_makes_the_average_of_shard_means_the_global_mean() -> None:
    x = torch.arange(10.0)
    parts = [dist.shard(x, r, 4) for r in range(4)]
    averaged = sum(p.mean() * 4 * len(p) / 10 for p in parts) / 4  # what DDP's average of scaled losses gives
    assert torch.isclose(averaged, x.mean())


def test_without_torchrun_nothing_is_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in dist.TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    assert not dist.launched()
    assert dist.launched({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "x", "MASTER_PORT": "1"})
    assert not dist.launched(
        {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "x", "MASTER_PORT": "1"}
    )
    assert dist.init_from_env("auto") == "auto"
    assert not torch.distributed.is_initialized()
    assert (dist.rank(), dist.world_size(), dist.is_main(), dist.active()) == (0, 1, True, False)
    assert dist.share(lambda: 7) == 7 and dist.all_true(False) is False and dist.writes_to("x")
    dist.barrier()
    model = build_model("multimodal-classifier", 0, **CFG)
    objective = dist.data_parallel(model, lambda m, x: m.loss(x))
    assert not isinstance(objective, torch.nn.Module)  # no wrapper


def test_commands_that_do_not_run_data_parallel_are_refused_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from mmunlearn.cli import join_torchrun

    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match="only `train`, `forget`, `victim` run data-parallel, not 'protect'"):
        join_torchrun(argparse.Namespace(command="protect"))


def _reference_training(model: torch.nn.Module, data, config: TrainConfig) -> None:
    """The loop as it was before torchrun support: what train_model must still do without torchrun."""
    opt = optimizer_for(model, config)
    for epoch in range(config.epochs):
        batches = epoch_batches(len(data), config.batch_size, config.seed, epoch)
        steps = len(batches)
        model.train()
        with seeded(config.seed * 1_000_003 + epoch):
            for i, idx in enumerate(batches):
                set_lr(
                    opt, lr_at(epoch * steps + i, config.epochs * steps, round(config.warmup_epochs * steps), config.lr)
                )
                optimizer_step(model, opt, model.loss(dict(data.batch(idx))), config.grad_clip)


def test_training_without_torchrun_is_bit_identical_to_the_plain_loop(tiny_av) -> None:
    reference = build_model("multimodal-classifier", 0, **CFG)  # modality dropout on: the RNG path is checked too
    _reference_training(reference, tiny_av, FAST)
    trained = train_model(build_model("multimodal-classifier", 0, **CFG), tiny_av, FAST).model
    expected = reference.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in trained.state_dict().items())
    assert not torch.distributed.is_initialized()


# -- two processes ---------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MMUNLEARN_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _toy_runs(out: Path, interrupt_at: int | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Train (3 epochs) then forget (neggrad_plus) on the toy set; the models' weights by name.

    With ``interrupt_at``, the training is interrupted at that optimizer step and started again, resuming
    from its checkpoint in ``out``, and so is the forget run from its work folder.
    """
    import mmunlearn.train as T
    import mmunlearn.unlearn.base as B
    import mmunlearn.unlearn.neggrad_plus  # noqa: F401 (registers it)
    from mmunlearn.unlearn import UNLEARNERS, UnlearnData
    from toy import make_av

    data = make_av(64)
    request = UnlearnData(data.take(torch.arange(16)), data.take(torch.arange(16, 64)))
    model = build_model("multimodal-classifier", 0, modality_dropout=0.0, **CFG)

    def train() -> torch.nn.Module:
        return train_model(copy_of(model), data, FAST, out_dir=out / "ckpt").model

    def forget(trained: torch.nn.Module) -> torch.nn.Module:
        return UNLEARNERS.create("neggrad_plus", **FORGET).unlearn(trained, request, work_dir=out / "work")

    if interrupt_at is None:
        trained = train()
        return {"train": trained.state_dict(), "forget": forget(trained).state_dict()}
    trained = _interrupted(T, interrupt_at, train)
    forgotten = _interrupted(B, 3, lambda: forget(trained))  # in epoch 2 of 2 steps each
    return {"train": trained.state_dict(), "forget": forgotten.state_dict()}


def _dual_encoder_run() -> dict[str, torch.Tensor]:
    """A tiny dual encoder trained 2 epochs at global batch 15 on 45 pairs (shards of 8 and 7 pairs under two
    ranks): its weights. The contrastive loss couples the pairs of a batch, so two ranks match one only if
    every rank's pairs meet the other rank's as negatives."""
    from toy import make_pairs, tiny_dual_encoder

    data = make_pairs(45)
    config = TrainConfig(epochs=2, batch_size=15, lr=3e-3, seed=3, progress=False)
    return train_model(tiny_dual_encoder(data), data, config).model.state_dict()


def _similarities(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Image-text similarity logits on the toy pairs of the dual encoder with these weights."""
    from toy import make_pairs, tiny_dual_encoder

    data = make_pairs(45)
    model = tiny_dual_encoder(data)
    model.load_state_dict(state)
    with torch.no_grad():
        return model.eval()(data.full_batch())


def copy_of(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)


def _interrupted(module, at: int, fn):
    """``fn()`` interrupted (KeyboardInterrupt) at optimizer step ``at`` of ``module``'s loop, then run again."""
    real, calls = module.optimizer_step, {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    module.optimizer_step = step
    try:
        fn()
        raise AssertionError("not interrupted")
    except KeyboardInterrupt:
        pass
    finally:
        module.optimizer_step = real
    return fn()


def worker(out: Path) -> None:
    """Run under torchrun (``python tests/test_distributed.py OUT``): the toy runs, straight and resumed."""
    torch.set_num_threads(1)
    dist.init_from_env("cpu")
    try:
        straight = _toy_runs(out / "straight")
        resumed = _toy_runs(out / "resumed", interrupt_at=7)
        dual = _dual_encoder_run()
        torch.save({"straight": straight, "resumed": resumed, "dual": dual}, out / f"rank{dist.rank()}.pt")
    finally:
        dist.shutdown()


@pytest.mark.slow
def test_two_processes_match_one_on_the_toy_loops(tmp_path: Path) -> None:
    _torchrun(str(Path(__file__)), str(tmp_path))
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    one = _toy_runs(tmp_path / "one")
    for stage in ("train", "forget"):
        two = rank0["straight"][stage]
        for k, v in two.items():
            assert torch.equal(v, rank1["straight"][stage][k]), f"{stage}: ranks differ at {k}"
            assert torch.equal(v, rank0["resumed"][stage][k]), f"{stage}: resuming changed {k}"
        # outputs, not raw weights: a conv bias before a per-channel GroupNorm has a zero gradient in exact
        # arithmetic, so Adam turns its float noise into lr-sized moves that change no output
        gap = (_logits(two) - _logits(one[stage])).abs().max()
        assert gap < TOL, f"{stage}: logits differ by {gap}"
    # the dual encoder: the contrastive loss over the global batch (its pairs gathered from both ranks)
    for k, v in rank0["dual"].items():
        assert torch.equal(v, rank1["dual"][k]), f"dual encoder: ranks differ at {k}"
    gap = (_similarities(rank0["dual"]) - _similarities(_dual_encoder_run())).abs().max()
    assert gap < TOL * 10, f"dual encoder: similarities differ by {gap}"  # logits scaled by up to 100
    # every rank wrote nothing but rank 0: one checkpoint folder, whose manifest says it finished
    manifest = json.loads((tmp_path / "straight" / "ckpt" / "manifest.json").read_text())
    assert manifest["training"]["finished"]


def _logits(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The fused logits on the toy set of the model with these weights."""
    from mmunlearn.metrics.outputs import classifier_logits
    from toy import make_av

    model = build_model("multimodal-classifier", 0, modality_dropout=0.0, **CFG)
    model.load_state_dict(state)
    return classifier_logits(model, make_av(64))


def _metrics(stdout: str) -> dict[tuple[str, str], float]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, stdout[-3000:]  # one record: rank 0's
    record = json.loads(lines[0])
    return {(m["name"], m["split"]): m["value"] for m in record["metrics"]}


def _in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """One process: the CLI run here (saves the start-up of a subprocess); its stdout."""
    from mmunlearn.cli import main

    capsys.readouterr()
    assert main(list(argv)) == 0, capsys.readouterr().err[-3000:]
    return capsys.readouterr().out


def _gap(a: dict[tuple[str, str], float], b: dict[tuple[str, str], float]) -> float:
    assert a.keys() == b.keys()
    print({f"{n}/{s}": round(b[n, s] - a[n, s], 4) for n, s in a})
    return max(abs(a[k] - b[k]) for k in a)


@pytest.mark.slow
def test_cli_train_and_forget_under_torchrun_match_one_process(
    tmp_path: Path, data_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--dataset", "av-digits", "--size", "small", "--data-dir", str(data_cache)]
    train = ["train", *data, "--epochs", "1", "--batch-size", "32", "--lr", "5e-3", "--device", "cpu", "--json"]
    one = _in_process(capsys, *train, "--out", str(tmp_path / "one"), "--quiet")
    two = _torchrun("-m", "mmunlearn", *train, "--out", str(tmp_path / "two"), "--quiet")
    # the model's modality dropout draws one number per sample, per rank: equal in distribution, not bitwise
    assert _gap(_metrics(one), _metrics(two.stdout)) <= STAT_TOL
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())

    forget = ["forget", "--model", str(tmp_path / "one"), "--method", "neggrad_plus", "--forget-fraction", "0.2"]
    forget += ["--set", "epochs=2", "--device", "cpu", "--json", "--quiet", "--data-dir", str(data_cache)]
    f1 = _in_process(capsys, *forget, "--out", str(tmp_path / "f1"))
    f2 = _torchrun("-m", "mmunlearn", *forget, "--out", str(tmp_path / "f2"))
    # neggrad_plus's retain term is the model's own loss, with its modality dropout: statistically equal
    assert _gap(_metrics(f1), _metrics(f2.stdout)) <= STAT_TOL
    assert (tmp_path / "f2" / "receipt.json").is_file()
    assert not (tmp_path / "f2" / ".work").exists()


if __name__ == "__main__":
    worker(Path(sys.argv[1]))


@pytest.mark.slow
def test_cli_victim_under_torchrun_matches_one_process(
    tmp_path: Path, data_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--size", "small", "--data-dir", str(data_cache)]
    protect = ["protect", "--dataset", "shapes-captions", *data, "--method", "random_noise", "--quiet"]
    _in_process(capsys, *protect, "--out", str(tmp_path / "protected"))
    victim = ["victim", "--protected", str(tmp_path / "protected"), "--epochs", "1", "--data-dir", str(data_cache)]
    one = _in_process(capsys, *victim, "--json", "--quiet")
    two = _torchrun("-m", "mmunlearn", *victim, "--json", "--quiet")
    # the dual encoder is deterministic and its loss is over the global batch under torchrun (pairs gathered
    # from both ranks): the same training up to float summation order; a recall moves only on near-ties
    assert _gap(_metrics(one), _metrics(two.stdout)) <= 0.01
