"""Hugging Face CLIP, SigLIP and CLAP models as dual encoders (`mmunlearn.models.hf`).

Every model here is a tiny random-initialised one written with ``save_pretrained`` into a temporary
folder with a tokenizer built offline (a word-level ``tokenizers`` model laid out like the real one:
CLIP's specials at the end, SigLIP's and RoBERTa's at the front), so nothing is downloaded.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from mmunlearn import load_dataset
from mmunlearn.checkpoint import load_checkpoint, save_checkpoint
from mmunlearn.data import ForgetRequest
from mmunlearn.data.core import MultimodalDataset
from mmunlearn.errors import CheckpointError, DataError
from mmunlearn.models import fresh_copy
from mmunlearn.models import hf as hf_module
from mmunlearn.models.hf import (
    HFDualEncoder,
    check_text_for_model,
    load_hf_model,
    splits_for_model,
    text_for_model,
)
from mmunlearn.models.protocols import DualEncoderModel, require
from mmunlearn.protectors.minmin import hotflip
from mmunlearn.protectors.protected import FIRST_WORD_ID, prepend_triggers
from mmunlearn.train import TrainConfig, train_model
from mmunlearn.unlearn import UNLEARNERS, UnlearnData

WORDS = [
    *("a", "an", "the", "red", "green", "blue", "yellow", "white", "black", "purple", "orange"),
    *("circle", "square", "star", "triangle", "above", "below", "left", "right", "of", "to", "beside"),
    *("next", "sound", "dog", "bird"),
]
DIM = {"clip": 16, "siglip": 32, "clap": 16}  # embedding sizes (SigLIP's is its hidden size)
TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
END, START = "<|endoftext|>", "<|startoftext|>"
LAYOUTS = {  # (tokens in front, tokens at the end, special tokens by role) as in the real tokenizers
    "clip": (["!", '"'], [START, END], {"bos": START, "eos": END, "pad": END, "unk": END}),
    "siglip": (["<pad>", "</s>", "<unk>"], [], {"eos": "</s>", "pad": "</s>", "unk": "<unk>"}),
    "clap": (
        ["<s>", "<pad>", "</s>", "<unk>"],
        ["<mask>"],
        {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"},
    ),
}


def make_tokenizer(kind: str):
    """A word-level fast tokenizer over `WORDS` with the special-token layout of ``kind``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    front, back, named = LAYOUTS[kind]
    tokens = [*front, *WORDS, *back]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=named["unk"]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **{f"{r}_token": t for r, t in named.items()})


def special_ids(kind: str) -> dict[str, int]:
    tok = make_tokenizer(kind)
    return {f"{r}_token_id": getattr(tok, f"{r}_token_id") for r in ("bos", "eos", "pad") if getattr(tok, f"{r}_token")}


def build_folder(kind: str, folder, image_size: int = 32):
    """Save a tiny random ``kind`` model, its tokenizer and its image processor config into ``folder``."""
    import transformers as tf

    tok = make_tokenizer(kind)
    text = {**TOWER, "vocab_size": len(tok), "max_position_embeddings": 32, **special_ids(kind)}
    vision = {**TOWER, "image_size": image_size, "patch_size": 8}
    torch.manual_seed(0)
    if kind == "clip":
        model = tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        proc = {"size": {"shortest_edge": image_size}, "crop_size": {"height": image_size, "width": image_size}}
        proc |= {
            "do_center_crop": True,
            "resample": 3,
            "image_mean": [0.48, 0.46, 0.41],
            "image_std": [0.27, 0.26, 0.28],
        }
    elif kind == "siglip":
        model = tf.SiglipModel(tf.SiglipConfig(text_config={**text, "projection_size": 32}, vision_config=vision))
        proc = {"size": {"height": image_size, "width": image_size}, "resample": 2, "image_mean": [0.5] * 3}
        proc |= {"image_std": [0.5] * 3}
    else:
        audio = {"spec_size": 64, "num_mel_bins": 16, "patch_embeds_hidden_size": 16, "hidden_size": 32}
        audio |= {"depths": [1, 1], "num_attention_heads": [2, 2], "window_size": 4, "patch_size": 4}
        audio |= {"patch_stride": [4, 4], "projection_dim": 16}
        text_config = {**text, "max_position_embeddings": 40, "projection_dim": 16}
        model = tf.ClapModel(tf.ClapConfig(text_config=text_config, audio_config=audio, projection_dim=16))
        proc = None
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    if proc is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(proc))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    out = {kind: build_folder(kind, root / kind) for kind in ("clip", "siglip", "clap")}
    out["clip16"] = build_folder("clip", root / "clip16", image_size=16)
    return out


@pytest.fixture(scope="module")
def pairs() -> MultimodalDataset:
    """64 shapes-captions training pairs (32x32 images)."""
    train = load_dataset("shapes-captions", "small", progress=False).train
    return train.take(torch.arange(64))


def audio_pairs(n: int = 16) -> MultimodalDataset:
    """Toy audio-caption pairs: the class is written into the log-mel and named by the caption."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 4
    audio = torch.randn(n, 8, 16, generator=g) * 0.3
    for c in range(4):
        audio[y == c, c * 2 : c * 2 + 2] += 1.5
    names = ["dog", "bird", "star", "circle"]
    captions = [f"the sound of a {names[c]}" for c in y.tolist()]
    return MultimodalDataset([f"au-{i}" for i in range(n)], {"audio": audio}, y, captions=captions, name="toy-audio")


# -- loading ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["clip", "siglip", "clap"])
def test_a_save_pretrained_folder_loads_and_satisfies_the_protocol(folders, kind):
    model = load_hf_model(folders[kind])
    assert isinstance(model, HFDualEncoder)
    assert require(model, (DualEncoderModel,), "test") is DualEncoderModel
    assert model.logit_scale().shape == ()
    assert model.token_embedding() is model.hf.text_model.get_input_embeddings()
    assert (model.logit_bias() is not None) == (kind == "siglip")
    assert model.config.image_role == ("audio" if kind == "clap" else "image")
    vocab = model.vocab
    assert vocab[:2] == ["[PAD]", "[UNK]"] and len(vocab) == model.config.vocab_size
    assert "<|endoftext|>" not in vocab and "<mask>" not in vocab  # trailing specials are no trigger tokens


def test_load_checkpoint_delegates_to_a_hugging_face_folder(folders):
    ckpt = load_checkpoint(folders["clip"])
    assert isinstance(ckpt.model, HFDualEncoder) and ckpt.manifest["model"] == "hf-dual-encoder"


def test_pickle_weights_and_other_model_types_are_refused(tmp_path, folders):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((folders["clip"] / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="only safetensors"):
        load_checkpoint(pickled)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match=r"'bert'.*clap, clip, siglip"):
        load_hf_model(bert)


# -- inputs -------------------------------------------------------------------------------------------
def test_images_are_resized_and_normalised_with_the_processor_settings_differentiably(folders):
    model = load_hf_model(folders["clip16"])
    images = torch.rand(3, 3, 32, 32, requires_grad=True)
    expected = F.interpolate(images, size=(16, 16), mode="bicubic", align_corners=False, antialias=True)
    mean, std = torch.tensor([0.48, 0.46, 0.41]), torch.tensor([0.27, 0.26, 0.28])
    torch.testing.assert_close(model.pixel_values(images), (expected - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    emb = model.encode_image(images)
    assert emb.shape == (3, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    emb.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["clip", "siglip", "clap"])
def test_text_rows_are_the_models_own_ids(folders, kind):
    model = load_hf_model(folders[kind]).eval()
    tok = make_tokenizer(kind)
    rows = model.retokenize(["a red circle", "the dog"], length=6)
    assert rows.dtype == torch.long and rows.shape == (2, 6)
    assert rows[0, :3].tolist() == tok.convert_tokens_to_ids(["a", "red", "circle"]) and rows[0, 3] == 0
    if kind == "clip":  # its token id 0 ("!") is padding in our rows, so it is dropped
        assert torch.equal(model.retokenize(["a red circle !"], length=6), rows[:1])
    emb = model.encode_text(rows)
    assert emb.shape == (2, DIM[kind])
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    # HotFlip's path: the embedding table's rows fed back give the same embeddings
    torch.testing.assert_close(model.encode_text(rows, model.token_embedding()(rows)), emb)
    with pytest.raises(DataError, match="text_for_model"):
        model.encode_text(torch.tensor([[model.config.vocab_size]]))


def test_text_for_model_re_encodes_a_dataset_and_keeps_trigger_room(folders, pairs):
    model = load_hf_model(folders["clip"])
    data = text_for_model(pairs, model)
    room = pairs.inputs["text"].shape[1] - int((pairs.inputs["text"] != 0).sum(1).max())
    assert data.vocab == model.vocab and data.ids == pairs.ids and data.name == pairs.name
    check_text_for_model(data, model)
    with pytest.raises(DataError, match="text_for_model"):
        check_text_for_model(pairs, model)  # word ids over the dataset's own vocabulary
    assert data.inputs["image"] is pairs.inputs["image"]
    assert data.inputs["text"].shape[1] - int((data.inputs["text"] != 0).sum(1).max()) == room
    torch.testing.assert_close(data.inputs["text"][:, : model.retokenize(pairs.captions or []).shape[1]],
                               model.retokenize(pairs.captions or []))  # fmt: skip


def test_splits_for_model_gives_every_split_one_row_length_and_the_models_vocab(folders):
    model = load_hf_model(folders["clip"])
    splits = load_dataset("shapes-captions", "small", progress=False)
    out = splits_for_model(splits, model, reserve=3)
    assert out.vocab == model.vocab and out.name == splits.name
    for name in ("train", "val", "test"):
        part = out.split(name)
        assert part.vocab == model.vocab and part.ids == splits.split(name).ids
        assert part.inputs["text"].shape[1] == out.text_len
    longest = max(int((out.split(n).inputs["text"] != 0).sum(1).max()) for n in ("train", "val", "test"))
    assert out.text_len == longest + 3


def test_an_audio_model_takes_the_audio_in_the_image_role(folders):
    model = load_hf_model(folders["clap"])
    data = text_for_model(audio_pairs(), model)
    assert set(data.inputs) == {"image", "text"} and data.inputs["image"].shape == (16, 8, 16)
    batch = data.full_batch()
    assert model.encode_image(batch["image"]).shape == (16, 16)
    torch.testing.assert_close(model.encode_audio(batch["image"]), model.encode_image(batch["image"]))
    assert torch.isfinite(model.loss(batch))
    assert torch.isfinite(model.loss({"audio": batch["image"], "text": batch["text"]}))


# -- training, checkpoints, methods -------------------------------------------------------------------
def full_loss(model: HFDualEncoder, data: MultimodalDataset) -> float:
    model.eval()
    with torch.no_grad():
        return float(model.loss(data.full_batch()))


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_training_lowers_the_models_own_loss(folders, pairs, kind):
    model = load_hf_model(folders["clip16" if kind == "clip" else kind])
    data = text_for_model(pairs, model)
    before = full_loss(model, data)
    config = TrainConfig(epochs=4, batch_size=16, lr=2e-3, warmup_epochs=0, progress=False)
    trained = train_model(model, data, config).model
    assert full_loss(trained, data) < before


def test_training_an_audio_model(folders):
    model = load_hf_model(folders["clap"])
    data = text_for_model(audio_pairs(), model)
    before = full_loss(model, data)
    config = TrainConfig(epochs=4, batch_size=8, lr=2e-3, warmup_epochs=0, progress=False)
    assert full_loss(train_model(model, data, config).model, data) < before


@pytest.mark.parametrize("kind", ["clip", "siglip", "clap"])
def test_checkpoint_round_trip_gives_identical_embeddings_and_tokenizer(folders, pairs, tmp_path, monkeypatch, kind):
    model = load_hf_model(folders[kind]).eval()
    data = text_for_model(audio_pairs() if kind == "clap" else pairs, model)
    manifest = save_checkpoint(tmp_path / "ckpt", model)
    assert manifest["config"]["hf_config"]["model_type"] == kind
    assert any(name.startswith("hf-tokenizer-") for name in manifest["files"])
    monkeypatch.setattr(hf_module, "_TOKENIZERS", {})  # as in a new process: the tokenizer comes from the files
    loaded = load_checkpoint(tmp_path / "ckpt").model.eval()
    assert isinstance(loaded, HFDualEncoder)
    batch = data.full_batch()
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(batch["image"]), model.encode_image(batch["image"]))
        assert torch.equal(loaded.encode_text(batch["text"]), model.encode_text(batch["text"]))
    assert torch.equal(loaded.retokenize(data.captions or []), model.retokenize(data.captions or []))


def test_a_fresh_copy_has_new_weights_and_the_same_tokenizer(folders):
    model = load_hf_model(folders["clip"])
    fresh = fresh_copy(model, seed=1)
    assert isinstance(fresh, HFDualEncoder) and fresh.tokenizer is model.tokenizer
    assert not torch.equal(fresh.token_embedding().weight, model.token_embedding().weight)


@pytest.mark.parametrize("name", ["finetune", "ccu"])
def test_dual_encoder_unlearners_run_on_a_hugging_face_model(folders, pairs, name):
    model = load_hf_model(folders["clip16"]).eval()
    data = text_for_model(pairs, model)
    train = data.take(torch.arange(48))
    unlearn_data = UnlearnData.from_request(
        ForgetRequest.random_fraction(train, 0.25, seed=0, modalities=("image", "text")),
        train,
        data.take(torch.arange(48, 64)),
    )
    before = copy.deepcopy(model.state_dict())
    settings = {"epochs": 1, "lr": 1e-3, "batch_size": 8, "progress": False}
    fields = {f for f in UNLEARNERS.get(name).Config.__dataclass_fields__}
    settings |= {"pairs_lr": 1e-3} if "pairs_lr" in fields else {}
    new = UNLEARNERS.create(name, **settings).unlearn(model, unlearn_data)
    assert isinstance(new, HFDualEncoder) and new is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "input model was modified"
    assert any(not torch.equal(before[k], v) for k, v in new.state_dict().items()), f"{name} changed nothing"
    assert all(torch.isfinite(p).all() for p in new.parameters())


def test_hotflip_ranks_the_models_own_vocabulary(folders, pairs):
    model = load_hf_model(folders["clip"]).eval().requires_grad_(False)
    data = text_for_model(pairs.take(torch.arange(8)), model, reserve=2)
    vocab = len(data.vocab or [])
    triggers = torch.full((8, 2), FIRST_WORD_ID, dtype=torch.long)
    out = hotflip(model, data.inputs["image"], data.inputs["text"], triggers, count=4, vocab=vocab)
    assert out.shape == (8, 2) and int(out.min()) >= FIRST_WORD_ID and int(out.max()) < vocab
    assert model.encode_text(prepend_triggers(data.inputs["text"], out)).shape == (8, 16)
