"""`Captioner`: teacher forcing against naive references, training, generation, saving and loading."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import LogitsProcessor, LogitsProcessorList

from mmunlearn.checkpoint import load_checkpoint, save_checkpoint
from mmunlearn.errors import ConfigError
from mmunlearn.models import MODELS, Captioner, build_model, fresh_copy, load_captioner
from mmunlearn.models.captioner import IGNORE
from mmunlearn.models.protocols import KINDS, CaptionerModel, Classifier, DualEncoderModel, missing_members
from mmunlearn.train import TrainConfig, train_model
from toy import make_pairs, tiny_captioner


@pytest.fixture(scope="module")
def pairs():
    return make_pairs(32)


def test_registered_and_satisfies_only_the_captioner_protocol(pairs) -> None:
    m = tiny_captioner(pairs)
    assert "captioner" in MODELS and m.kind == "captioner" and KINDS[CaptionerModel] == "captioner"
    assert missing_members(m, CaptionerModel) == []
    assert missing_members(m, Classifier) and missing_members(m, DualEncoderModel)


def test_special_ids_follow_the_word_vocabulary(pairs) -> None:
    m = tiny_captioner(pairs)
    v = len(pairs.vocab)
    assert (m.bos_id, m.eos_id, m.pad_id) == (v, v + 1, 0)
    assert m.net.config.decoder.vocab_size == v + 2
    assert m.net.config.decoder_start_token_id == v and m.net.config.decoder.add_cross_attention


def test_targets_and_loss_against_a_naive_per_token_loop(pairs) -> None:
    m = tiny_captioner(pairs).eval()
    batch = pairs.batch(torch.arange(6))
    targets = m.caption_targets(batch)
    logits = m.caption_logits(batch)
    assert logits.shape == (6, batch["text"].shape[1] + 1, len(pairs.vocab) + 2)
    total, count = 0.0, 0
    for i, row in enumerate(batch["text"].tolist()):
        words = [w for w in row if w != 0]
        expected = words + [m.eos_id] + [IGNORE] * (len(row) - len(words))
        assert targets[i].tolist() == expected
        for t, y in enumerate([*words, m.eos_id]):  # position t predicts token t after [BOS, w1..]
            total += float(-F.log_softmax(logits[i, t].detach(), -1)[y])
            count += 1
    assert math.isclose(float(m.loss(batch).detach()), total / count, rel_tol=1e-5)


def test_teacher_forcing_is_causal(pairs) -> None:
    m = tiny_captioner(pairs).eval()
    batch = pairs.batch(torch.arange(2))
    changed = dict(batch, text=batch["text"].clone())
    changed["text"][:, 3] = 5  # the logits before position 4 must not see token 3
    a, b = m.caption_logits(batch), m.caption_logits(changed)
    assert torch.equal(a[:, :4], b[:, :4]) and not torch.equal(a[:, 4:], b[:, 4:])


def test_training_reduces_the_loss(pairs) -> None:
    m = tiny_captioner(pairs)
    batch = pairs.batch(torch.arange(len(pairs)))
    with torch.no_grad():
        before = float(m.eval().loss(batch))
    trained = train_model(m, pairs, TrainConfig(epochs=8, batch_size=16, lr=5e-3, seed=0, warmup_epochs=0)).model
    with torch.no_grad():
        after = float(trained.eval().loss(batch))
    assert after < before - 0.5


def test_generate_returns_valid_ids_and_decode_drops_specials(pairs) -> None:
    m = tiny_captioner(pairs).eval()
    ids = m.generate(pairs.inputs["image"][:8])
    assert ids.dtype == torch.long and ids.shape[0] == 8 and 1 <= ids.shape[1] <= pairs.inputs["text"].shape[1] + 1
    assert int(ids.min()) >= 0 and int(ids.max()) < len(pairs.vocab) + 2
    assert not bool((ids == m.bos_id).any())
    for row in ids.tolist():
        eos = row.index(m.eos_id) if m.eos_id in row else len(row)
        assert 0 not in row[:eos] and all(t == 0 for t in row[eos + 1 :])
    texts = m.decode(ids)
    for row, text in zip(ids.tolist(), texts, strict=True):
        eos = row.index(m.eos_id) if m.eos_id in row else len(row)
        assert text.split() == [pairs.vocab[t] for t in row[:eos]]
    assert len(m.generate(pairs.inputs["image"][:2], max_new_tokens=3)[0]) <= 3
    assert m.decode(torch.tensor([[2, 0, 3, m.bos_id, m.eos_id, 4]])) == [f"{pairs.vocab[2]} {pairs.vocab[3]}"]


def test_generate_is_greedy_decoding_of_the_teacher_forced_logits(pairs) -> None:
    m = tiny_captioner(pairs).eval()
    images = pairs.inputs["image"][:3]
    ids = m.generate(images, max_new_tokens=4)
    for i in range(3):  # naive greedy loop through caption_logits (PAD and BOS banned, as generate does)
        prefix: list[int] = []
        for _ in range(ids.shape[1]):
            row = torch.tensor([[*prefix, *([0] * (4 - len(prefix)))]])
            logits = m.caption_logits({"image": images[i : i + 1], "text": row})[0, len(prefix)].clone()
            logits[[m.pad_id, m.bos_id]] = float("-inf")
            prefix.append(int(logits.argmax()))
            if prefix[-1] == m.eos_id:
                break
        assert ids[i, : len(prefix)].tolist() == prefix


class Ban(LogitsProcessor):
    """Sets one token's score to -inf at every step."""

    def __init__(self, token: int) -> None:
        self.token = token

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.token] = float("-inf")
        return scores


def test_a_logits_processor_really_bans_a_token(pairs) -> None:
    m = tiny_captioner(pairs).eval()
    images = pairs.inputs["image"]
    plain = m.generate(images)
    counts = torch.bincount(plain.flatten(), minlength=len(pairs.vocab) + 2)
    counts[[0, m.eos_id]] = 0
    token = int(counts.argmax())
    assert counts[token] > 0
    banned = m.generate(images, logits_processor=LogitsProcessorList([Ban(token)]))
    assert not bool((banned == token).any())
    bad = m.generate(images, bad_words_ids=[[token]])  # a generate() keyword passes through too
    assert not bool((bad == token).any())


def test_image_features_are_the_mean_encoder_state(pairs) -> None:
    m = tiny_captioner(pairs).eval()
    images = pairs.inputs["image"][:4]
    feats = m.image_features(images)
    hidden = m.net.encoder(pixel_values=(images - 0.5) / 0.5).last_hidden_state
    assert feats.shape == (4, 16)
    assert torch.allclose(feats, torch.stack([h.sum(0) / h.shape[0] for h in hidden]), atol=1e-6)


def test_checkpoint_round_trip_is_bit_identical(pairs, tmp_path) -> None:
    m = tiny_captioner(pairs, seed=3).eval()
    save_checkpoint(tmp_path / "ckpt", m)
    loaded = load_checkpoint(tmp_path / "ckpt").model.eval()
    assert isinstance(loaded, Captioner)
    batch = pairs.batch(torch.arange(8))
    assert torch.equal(m.caption_logits(batch), loaded.caption_logits(batch))
    assert torch.equal(m.generate(batch["image"]), loaded.generate(batch["image"]))


def test_seeded_builds_and_fresh_copies(pairs) -> None:
    a, b, c = tiny_captioner(pairs, seed=1), tiny_captioner(pairs, seed=1), tiny_captioner(pairs, seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    fresh = fresh_copy(c, 1).state_dict()
    assert all(torch.equal(sa[k], fresh[k]) for k in sa)


def test_save_pretrained_and_load_captioner(pairs, tmp_path) -> None:
    m = tiny_captioner(pairs, seed=4).eval()
    m.save_pretrained(tmp_path / "hf")
    loaded = load_captioner(tmp_path / "hf").eval()
    batch = pairs.batch(torch.arange(8))
    assert torch.equal(m.caption_logits(batch), loaded.caption_logits(batch))
    assert torch.equal(m.generate(batch["image"]), loaded.generate(batch["image"]))
    save_checkpoint(tmp_path / "ckpt", loaded)  # a loaded one is a registered model like any other
    again = load_checkpoint(tmp_path / "ckpt").model.eval()
    assert torch.equal(again.caption_logits(batch), m.caption_logits(batch))


def test_bad_configs_are_config_errors(pairs) -> None:
    with pytest.raises(ConfigError, match="heads"):
        tiny_captioner(pairs, heads=3)
    with pytest.raises(ConfigError, match="patch"):
        tiny_captioner(pairs, patch=5)
    with pytest.raises(ConfigError, match="vocabulary"):
        build_model("captioner", 0, image_shape=[3, 32, 32], vocab=["a", "b"], text_len=4)


def test_captioner_recipes_are_asked_for_by_name() -> None:
    from mmunlearn.recipes import RECIPES, recipe_for

    for dataset in ("shapes-captions", "emoji-captions"):
        assert recipe_for(dataset).model == "dual-encoder"  # the default stays the dual encoder
        assert recipe_for(dataset, model="dual-encoder") is RECIPES[dataset]
        assert recipe_for(dataset, model="captioner").model == "captioner"
    with pytest.raises(ConfigError, match="no 'captioner' recipe"):
        recipe_for("av-digits", model="captioner")
