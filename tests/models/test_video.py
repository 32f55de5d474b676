"""The video modality: `VideoEncoder`, a classifier with video, and forgetting a video through the pipeline."""

from __future__ import annotations

import pytest
import torch

from mmunlearn.data import ForgetRequest, MultimodalDataset, load_dataset
from mmunlearn.errors import ConfigError, DataError
from mmunlearn.models import build_model
from mmunlearn.models.encoders import VideoEncoder
from mmunlearn.pipeline import run_request
from mmunlearn.train import TrainConfig, train_model
from mmunlearn.unlearn import UNLEARNERS, UnlearnData

SHAPES = {"video": [4, 1, 16, 16], "audio": [8, 16]}
CFG = {"input_shapes": SHAPES, "num_classes": 4, "feat_dim": 8, "width": 4}


def make_video_av(n: int = 64, seed: int = 0) -> MultimodalDataset:
    """A learnable toy set: a bright band (its row = the class) sliding across 4 frames, and a noisy audio band."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    video = torch.rand(n, 4, 1, 16, 16, generator=g) * 0.3
    audio = torch.randn(n, 8, 16, generator=g) * 0.3
    for c in range(4):
        for t in range(4):
            video[y == c, t, :, c * 4 : c * 4 + 4, t * 4 : t * 4 + 4] += 0.7
        audio[y == c, c * 2 : c * 2 + 2, :] += 1.5
    video = (video.clamp(0, 1) * 255).round().to(torch.uint8)  # stored like a built set: uint8 clips
    ids = [f"toy-video-{i:04d}" for i in range(n)]
    return MultimodalDataset(ids, {"video": video, "audio": audio}, y, num_classes=4, name="toy-video")


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_video_encoder_shapes_and_pooling(pooling: str) -> None:
    torch.manual_seed(0)
    enc = VideoEncoder((4, 1, 16, 16), 12, width=4, pooling=pooling).eval()
    x = torch.rand(3, 4, 1, 16, 16)
    out = enc(x)
    assert out.shape == (3, 12)
    frames = enc.frame_features(x)
    weights = enc.frame_weights(frames)
    assert frames.shape == (3, 4, 12) and weights.shape == (3, 4)
    assert torch.allclose(weights.sum(1), torch.ones(3))
    assert torch.allclose(out, (weights.unsqueeze(-1) * frames).sum(1), atol=1e-6)
    assert enc(torch.rand(2, 7, 1, 16, 16)).shape == (2, 12)  # any clip length
    # each frame is encoded on its own: one clip's frames give the same features inside any batch
    assert torch.allclose(enc.frame_features(x[:1]), frames[:1], atol=1e-5)


def test_mean_pooling_is_the_frame_average_and_attention_learns() -> None:
    enc = VideoEncoder((4, 1, 16, 16), 8, width=4)
    x = torch.rand(2, 4, 1, 16, 16)
    assert torch.allclose(enc(x), enc.frame_features(x).mean(1), atol=1e-6)
    assert not any("score" in n for n, _ in enc.named_parameters())
    att = VideoEncoder((4, 1, 16, 16), 8, width=4, pooling="attention")
    assert any("score" in n for n, _ in att.named_parameters())


def test_video_encoder_errors() -> None:
    with pytest.raises(ConfigError, match="unknown video pooling 'max'"):
        VideoEncoder((4, 1, 16, 16), 8, pooling="max")
    with pytest.raises(DataError, match=r"\(B, T, C, H, W\)"):
        VideoEncoder((4, 1, 16, 16), 8, width=4)(torch.rand(2, 1, 16, 16))


def test_classifier_config_errors() -> None:
    with pytest.raises(ConfigError, match="video_pooling"):
        build_model("multimodal-classifier", 0, **CFG, video_pooling="max")
    with pytest.raises(ConfigError, match=r"\[T, C, H, W\]"):
        build_model("multimodal-classifier", 0, **{**CFG, "input_shapes": {"video": [1, 16, 16]}})


def test_image_video_audio_classifier_decomposes_into_modality_blocks() -> None:
    shapes = {"image": [1, 16, 16], **SHAPES}
    m = build_model("multimodal-classifier", 0, **{**CFG, "input_shapes": shapes}, video_pooling="attention").eval()
    assert m.modalities == ("image", "audio", "video")
    batch = {"image": torch.rand(5, 1, 16, 16), "video": torch.rand(5, 4, 1, 16, 16), "audio": torch.randn(5, 8, 16)}
    fused = m(batch)
    parts = [m.modality_logits(batch, mod) for mod in m.modalities]
    assert fused.shape == (5, 4)
    assert torch.allclose(fused, sum(parts) - 2 * m.head.bias, atol=1e-5)
    assert m.loss({**batch, "label": torch.arange(5) % 4}).isfinite()


def test_video_audio_classifier_trains_and_video_alone_predicts() -> None:
    data = make_video_av()
    assert data.inputs["video"].dtype == torch.float32 and float(data.inputs["video"].max()) <= 1.0
    m = build_model("multimodal-classifier", 0, **CFG)
    result = train_model(m, data, TrainConfig(epochs=12, batch_size=16, lr=3e-3, progress=False))
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    batch = data.full_batch()
    model = result.model.eval()
    with torch.no_grad():
        video_only = model.modality_logits(batch, "video")
        missing = data.with_missing(data.ids[:8], ["audio"]).batch(torch.arange(8))
        assert torch.allclose(model(missing), model.modality_logits(missing, "video"), atol=1e-5)
    assert video_only.shape == (64, 4)
    assert (video_only.argmax(1) == data.labels).float().mean() > 0.5


@pytest.fixture(scope="module")
def small_video(data_cache):
    """Parts of av-digits-video small (train, val, test), and a tiny classifier trained on them for one epoch."""
    splits = load_dataset("av-digits-video", "small", 0, data_cache)
    parts = [d.take(torch.arange(n)) for d, n in ((splits.train, 200), (splits.val, 50), (splits.test, 100))]
    shapes = {m: list(parts[0].inputs[m].shape[1:]) for m in parts[0].modalities}
    model = build_model("multimodal-classifier", 0, input_shapes=shapes, num_classes=10, feat_dim=16, width=4)
    trained = train_model(model, parts[0], TrainConfig(epochs=1, batch_size=64, progress=False)).model
    return parts, trained


@pytest.mark.parametrize(
    ("method", "overrides"),
    [("ccu", {"epochs": 1}), ("finetune", {}), ("grad_ascent", {"epochs": 1}), ("retrain", {"epochs": 1})],
)
def test_forget_the_video_of_a_few_samples(small_video, method: str, overrides: dict) -> None:
    (train, val, test), model = small_video
    request = ForgetRequest(tuple(train.ids[:6]), frozenset({"video"}), "test")
    unlearner = UNLEARNERS.create(method, progress=False, **overrides)
    result = run_request(model, train, request, unlearner, validation=val, test=test)
    assert result.data.forget_modality == "video"
    names = {(r.name, r.split) for r in result.metrics}
    assert {("acc_video", "unlearn"), ("acc_audio", "unlearn"), ("retain_cka_video", "retain")} <= names
    assert {("relearn_acc_video", "unlearn"), ("mia_svc", "unlearn")} <= names
    assert not any("image" in name for name, _ in names)
    assert result.receipt["request"]["modalities"] == ["video"]
    # the gold-standard set keeps the six samples' audio and drops their video
    gold = result.data.gold_standard
    pos = gold.positions(request.ids)
    assert not gold.present["video"][pos].any() and gold.present["audio"][pos].all()
    assert float(gold.inputs["video"][pos].abs().sum()) == 0.0
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_visual_modality_is_the_one_measured() -> None:
    data = make_video_av(16)
    assert UnlearnData(data, data, frozenset({"video", "audio"})).forget_modality == "video"
    assert UnlearnData(data, data, frozenset({"image", "video"})).forget_modality == "image"
    assert UnlearnData(data, data, frozenset({"audio"})).forget_modality == "audio"
