import pytest
import torch

from mmunlearn.errors import ConfigError, DataError
from mmunlearn.models import MODELS, DualEncoder, WordTokenizer, build_model

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}


def test_fused_logits_decompose_into_modality_blocks(tiny_av):
    m = build_model("multimodal-classifier", 0, **CFG).eval()
    b = tiny_av.batch(torch.arange(6))
    fused = m(b)
    img, aud = m.modality_logits(b, "image"), m.modality_logits(b, "audio")
    assert torch.allclose(fused, img + aud - m.head.bias, atol=1e-5)


def test_missing_modality_equals_unimodal_logits(tiny_av):
    m = build_model("multimodal-classifier", 0, **CFG).eval()
    view = tiny_av.with_missing(tiny_av.ids[:3], ["image"])
    b = view.batch(torch.arange(3))
    assert torch.allclose(m(b), m.modality_logits(b, "audio"), atol=1e-5)


def test_modality_dropout_never_drops_everything():
    m = build_model("multimodal-classifier", 0, **{**CFG, "modality_dropout": 1.0})
    b = {"image": torch.rand(64, 1, 16, 16), "audio": torch.randn(64, 8, 16)}
    masks = m._dropout_masks(b)
    both = torch.stack([masks["image"], masks["audio"]], 1)
    assert (both.sum(1) == 1).all()  # with p=1 every sample loses exactly one of its two modalities


def test_unknown_modality_and_config_key():
    m = build_model("multimodal-classifier", 0, **CFG)
    with pytest.raises(DataError, match="no 'text' encoder"):
        m.embed({}, "text")
    with pytest.raises(ConfigError, match="unknown ClassifierConfig key"):
        MODELS.create("multimodal-classifier", **CFG, bogus=1)


def test_dual_encoder_embeddings_and_loss():
    tok = WordTokenizer.build(["a red circle", "a blue square left of a red circle"], reserve=3)
    m = build_model(
        "dual-encoder",
        0,
        image_shape=[3, 16, 16],
        vocab=tok.vocab,
        text_len=tok.max_len,
        embed_dim=16,
        width=4,
        text_dim=16,
    )
    assert isinstance(m, DualEncoder)
    ids = tok.encode(["a red circle", "a blue square left of a red circle"])
    img = m.encode_image(torch.rand(2, 3, 16, 16))
    txt = m.encode_text(ids)
    assert torch.allclose(img.norm(dim=1), torch.ones(2)) and torch.allclose(txt.norm(dim=1), torch.ones(2))
    assert torch.allclose(m.encode_captions(["a red circle"]), txt[:1], atol=1e-6)
    loss = m.loss({"image": torch.rand(2, 3, 16, 16), "text": ids})
    assert loss.isfinite() and loss > 0
    # word order matters to the text tower (bag-of-words would confuse relations)
    a = m.encode_text(tok.encode(["a red circle left of a blue square"]))
    b = m.encode_text(tok.encode(["a blue square left of a red circle"]))
    assert not torch.allclose(a, b)


def test_tokenizer_round_trip_and_budget():
    tok = WordTokenizer.build(["Hello, world!", "hello there"], reserve=4)
    assert tok.vocab[:2] == ["[PAD]", "[UNK]"] and tok.max_len == 6
    ids = tok.encode(["hello world", "unseen words"])
    assert tok.decode(ids[0]) == "hello world" and ids[1, 0] == 1
    assert tok.caption_budget(ids) == 4
    assert WordTokenizer.from_dict(tok.to_dict()).fingerprint() == tok.fingerprint()
    with pytest.raises(ValueError, match="more than max_len"):
        tok.encode(["a b c d e f g"])
