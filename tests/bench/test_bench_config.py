"""Bench configs: the shipped grids parse; every bad input is one clear error naming the known values."""

from pathlib import Path

import pytest

from mmunlearn.benchmarking import ProtectGrid, UnlearnGrid, load_config, parse_config
from mmunlearn.benchmarking.cells import bench_cells
from mmunlearn.errors import ConfigError

CONFIGS = Path(__file__).parents[2] / "benchmarks" / "configs"


def unlearn(**grid):
    return {"name": "t", "grids": [{"scenario": "unlearn", "dataset": "av-digits", **grid}]}


def protect(**grid):
    return {"name": "t", "grids": [{"scenario": "protect", "dataset": "shapes-captions", **grid}]}


@pytest.mark.parametrize("name", ["quick", "full", "scenario_c_small", "stages", "protection"])
def test_shipped_configs_parse(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.name == name
    assert {type(g) for g in config.grids} <= {UnlearnGrid, ProtectGrid}
    keys = [c.key for c in bench_cells(config)]
    assert len(keys) == len(set(keys)) > 0


def test_rows_put_retrain_first_and_merge_overrides():
    grid = parse_config(unlearn(methods=["ccu"], overrides={"ccu": {"epochs": 1}},
                                variants={"ccu -a": {"method": "ccu", "use_a": False}})).grids[0]  # fmt: skip
    rows = grid.rows()
    assert list(rows) == ["retrain", "ccu", "ccu -a"]
    assert rows["ccu -a"] == ("ccu", {"epochs": 1, "use_a": False})


def test_protect_variants_are_rows_of_their_protector_with_other_settings():
    raw = protect(protectors=["mem"], overrides={"mem": {"outer_iters": 2}},
                  variants={"mem short": {"protector": "mem", "pgd_steps": 1}})  # fmt: skip
    grid = parse_config(raw).grids[0]
    assert list(grid.rows()) == ["clean", "mem", "mem short"]
    assert grid.protector_key("mem short") == "mem"
    assert grid.protector_config("mem short", 3) == {"outer_iters": 2, "pgd_steps": 1, "seed": 3}
    cells = {c.label: c for c in bench_cells(parse_config(raw))}
    assert cells["mem short"].settings()["protector"]["pgd_steps"] == 1
    assert cells["mem"].settings()["protector"]["pgd_steps"] != 1
    assert cells["mem short"].key != cells["mem"].key


def key_of(label, **grid):
    return next(c.key for c in bench_cells(parse_config(unlearn(methods=["ccu"], **grid))) if c.label == label)


def test_cell_keys_are_stable_and_change_with_the_settings_only():
    cells = bench_cells(parse_config(unlearn(methods=["ccu"], seeds=[0, 1], requests=["random", "identity"])))
    assert len(cells) == 2 * 2 * 3  # seeds x requests x (original, retrain, ccu)
    assert key_of("ccu") == key_of("ccu")
    assert key_of("ccu") != key_of("ccu", overrides={"ccu": {"epochs": 5}})
    # other rows keep their keys (and their stored records) when one method's settings change
    assert key_of("retrain") == key_of("retrain", overrides={"ccu": {"epochs": 5}})
    assert key_of("retrain") != key_of("retrain", train={"epochs": 3})


@pytest.mark.parametrize(
    ("raw", "message", "listed"),
    [
        (unlearn(methods=["ccu", "nope"]), "unknown methods ['nope']", "finetune"),
        (unlearn(dataset="mnist"), "unknown datasets ['mnist']", "av-digits"),
        (unlearn(metrics=["acc_fused", "bleu"]), "unknown metrics ['bleu']", "mia_svc"),
        (protect(metrics=["i2t_r1", "acc_fused"]), "unknown metrics ['acc_fused']", "mean_recall"),
        (protect(protectors=["mem", "ghost"]), "unknown protectors ['ghost']", "random_noise"),
        (unlearn(requests=["all"]), "unknown requests ['all']", "identity"),
        (unlearn(overrides={"ccu": {"lamda_a": 1}}), "unknown CCUConfig key(s) ['lamda_a']", "lambda_a"),
        (unlearn(variants={"x": {"use_a": False}}), "needs a 'method' key", "ccu"),
        (unlearn(train={"epoch": 3}), "unknown key(s) ['epoch'] in train", "epochs"),
        (unlearn(seed=[0]), "unknown key(s) ['seed'] in an unlearn grid", "seeds"),
        (protect(victims=[{"defense": "jpeg"}]), "unknown key(s) ['defense'] in a victim", "defence"),
        (protect(victims=[{"defence": "sharpen"}]), "unknown defence 'sharpen'", "jpeg10"),
        (protect(overrides={"mem": {"epsilon": 2.0}}), "epsilon", "(0, 1]"),
        (protect(variants={"m2": {"outer_iters": 2}}), "variant 'm2' needs a 'protector' key", "mem"),
        (protect(variants={"m2": {"protector": "nope"}}), "unknown protectors ['nope']", "mem"),
        (protect(protectors=["mem"], variants={"mem": {"protector": "mem"}}), "already a row", "another label"),
        (protect(variants={"m2": {"protector": "mem", "pgd_steps": 0}}), "pgd_steps", ">= 1"),
        (unlearn(dataset="shapes-captions", requests=["identity"]), "unknown requests on shapes-captions", "concept"),
        (unlearn(requests=["concept"]), "unknown requests on av-digits ['concept']", "identity"),
        (unlearn(dataset="shapes-captions", methods=["boundary_shrink"]), "cannot edit the dual-encoder", "cliperase"),
        (unlearn(methods=["cliperase"]), "cannot edit the classifier of av-digits", "boundary_shrink"),
        (protect(dataset="av-digits"), "has no text modality", "shapes-captions"),
        (unlearn(seeds=["0"]), "seeds must be a non-empty list of ints", "'0'"),
        (unlearn(size="huge"), "size must be one of", "small"),
        (unlearn(fraction="ten percent"), "fraction must be a number in (0, 1)", "'ten percent'"),
        (unlearn(fraction=1.5), "fraction must be a number in (0, 1)", "1.5"),
        ({"name": "t", "grids": [{"scenario": "train"}]}, "unknown scenario 'train'", "unlearn, protect"),
        ({"name": "t", "grids": []}, "'grids' must be a non-empty list", "grids"),
        ({"grids": [{"scenario": "unlearn"}]}, "'name' must be a non-empty string", "name"),
        ({"name": "t", "grids": [], "extra": 1}, "unknown key(s) ['extra'] in the bench config", "grids"),
        (["not", "a", "mapping"], "a bench config is a mapping", "grids"),
    ],
)
def test_bad_configs_are_clear_errors(raw, message, listed):
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    assert message in str(e.value)
    assert listed in str(e.value)


def test_caption_grids_take_pair_requests_and_dual_encoder_methods():
    raw = unlearn(dataset="emoji-captions", requests=["random", "concept", "group"], methods=["ccu", "cliperase"])
    cells = bench_cells(parse_config(raw))
    assert {c.request for c in cells} == {"random", "concept", "group"}
    assert {c.label for c in cells} == {"original", "retrain", "ccu", "cliperase"}


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: t\ngrids:\n  - scenario: unlearn\n    methods: [ccu, finetune\n")
    with pytest.raises(ConfigError, match=r"malformed YAML in .*bad\.yaml at line \d+, column \d+"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "absent.yaml")


def test_captioner_grids_take_generative_methods_and_their_own_metrics():
    raw = unlearn(dataset="shapes-captions", model="captioner", requests=["concept"], methods=["neggrad_plus"],
                  metrics=["mention_concept", "bleu4"])  # fmt: skip
    (grid,) = parse_config(raw).grids
    assert grid.model == "captioner" and grid.title == "shapes-captions captioner"
    dual = parse_config(unlearn(dataset="shapes-captions", requests=["concept"], methods=["neggrad_plus"]))
    keys = {c.key for c in bench_cells(parse_config(raw))}
    assert keys.isdisjoint({c.key for c in bench_cells(dual)})  # another model: other cells
    with pytest.raises(ConfigError, match=r"ccu cannot edit the captioner of shapes-captions; methods that can: .*"):
        parse_config(unlearn(dataset="shapes-captions", model="captioner", methods=["ccu"]))
    with pytest.raises(ConfigError, match="no 'captioner' recipe for dataset 'av-digits'"):
        parse_config(unlearn(dataset="av-digits", model="captioner", methods=["grad_ascent"]))
    with pytest.raises(ConfigError, match="unknown metrics"):
        parse_config(unlearn(dataset="shapes-captions", model="captioner", methods=["grad_ascent"], metrics=["i2t_r1"]))
    with pytest.raises(ConfigError, match="unknown models"):
        parse_config(unlearn(dataset="shapes-captions", model="gpt", methods=["grad_ascent"]))
