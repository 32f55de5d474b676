"""The min-min machinery: exact HotFlip re-scoring against brute force, PGD within its budget."""

from __future__ import annotations

import torch
from caption_toy import VOCAB, make_captions

from mmunlearn.models import build_model, clip_loss
from mmunlearn.protectors.minmin import (
    MinMinSettings,
    cover_batches,
    frozen,
    hotflip,
    hotflip_candidates,
    pgd_noise,
    swap_losses,
    with_trigger,
)
from mmunlearn.protectors.protected import prepend_triggers


def tiny_model(seed: int = 0):
    return build_model("dual-encoder", seed, image_shape=[3, 8, 8], vocab=VOCAB, text_len=8, width=4, embed_dim=16,
                       text_dim=16, text_layers=1, init_temperature=0.5)  # fmt: skip


def batch_loss(model, images, captions, triggers):
    with torch.no_grad():
        return float(clip_loss(model.encode_image(images), model.encode_text(prepend_triggers(captions, triggers)),
                               model.logit_scale()))  # fmt: skip


def test_swap_losses_match_direct_computation():
    g = torch.Generator().manual_seed(0)
    norm = lambda t: torch.nn.functional.normalize(t, dim=-1)  # noqa: E731
    img, txt, alt = (
        norm(torch.randn(5, 4, generator=g)),
        norm(torch.randn(5, 4, generator=g)),
        norm(torch.randn(5, 3, 4, generator=g)),
    )
    scale = torch.tensor(7.0)
    got = swap_losses(img, txt, alt, scale)
    for i in range(5):
        for r in range(3):
            t = txt.clone()
            t[i] = alt[i, r]
            assert abs(float(got[i, r]) - float(clip_loss(img, t, scale))) < 1e-5


def test_hotflip_picks_the_loss_minimising_token_brute_force():
    data = make_captions(n=4, seed=3)
    model = tiny_model(1)
    images, captions = data.inputs["image"], data.inputs["text"]
    triggers = torch.full((4, 1), 2)
    base = batch_loss(model, images, captions, triggers)
    best, gain = [], []
    for i in range(4):  # brute force over every real word for pair i, the others fixed
        losses = []
        for w in range(2, len(VOCAB)):
            t = triggers.clone()
            t[i, 0] = w
            losses.append(batch_loss(model, images, captions, t))
        best.append(2 + min(range(len(losses)), key=losses.__getitem__))
        gain.append(base - min(losses))
    with frozen(model):
        out = hotflip(model, images, captions, triggers, count=len(VOCAB), vocab=len(VOCAB))
    top = max(range(4), key=gain.__getitem__)
    assert gain[top] > 0 and int(out[top, 0]) == best[top]
    for i in range(4):
        assert int(out[i, 0]) in (2, best[i])  # a pair either keeps its token or takes its brute-force best
    assert batch_loss(model, images, captions, out) <= base


def test_hotflip_candidates_are_real_words_ranked_per_position():
    data = make_captions(n=6)
    model = tiny_model()
    with frozen(model), torch.no_grad():
        emb = model.encode_image(data.inputs["image"])
    with frozen(model):
        cand = hotflip_candidates(model, emb, data.inputs["text"], torch.full((6, 3), 5), 4, len(VOCAB))
    assert cand.shape == (6, 3, 4)
    assert int(cand.min()) >= 2 and int(cand.max()) < len(VOCAB)
    with frozen(model):
        out = hotflip(model, data.inputs["image"], data.inputs["text"], torch.full((6, 3), 5), 3, len(VOCAB))
    assert out.shape == (6, 3) and int(out.min()) >= 2 and int(out.max()) < len(VOCAB)


def test_pgd_noise_stays_in_budget_and_lowers_the_loss():
    data = make_captions(n=8)
    model = tiny_model()
    images, captions = data.inputs["image"], data.inputs["text"]
    trig = torch.full((8, 2), 3)
    eps = 4 / 255
    settings = MinMinSettings(epsilon=eps, step=1 / 255, pgd_steps=6, shuffle_captions=False)
    with frozen(model):
        delta = pgd_noise(model, images, captions, trig, torch.zeros_like(images), settings, torch.Generator())
    assert float(delta.abs().max()) <= eps + 1e-6
    noisy = images + delta
    assert float(noisy.min()) >= 0 and float(noisy.max()) <= 1
    assert batch_loss(model, noisy, captions, trig) < batch_loss(model, images, captions, trig)
    shuffled = MinMinSettings(epsilon=eps, pgd_steps=3, shuffle_captions=True)
    with frozen(model):
        delta = pgd_noise(model, images, captions, trig, torch.zeros_like(images), shuffled, torch.Generator())
    assert float(delta.abs().max()) <= eps + 1e-6


def test_cover_batches_cover_every_pair_once():
    for n, b in ((10, 3), (9, 4), (7, 7), (2, 5)):
        batches = cover_batches(n, b, torch.Generator().manual_seed(0))
        assert sorted(torch.cat(batches).tolist()) == list(range(n))
        assert all(len(x) >= 2 for x in batches)


def test_with_trigger_trims_padding_only():
    data = make_captions(n=3)
    ids = with_trigger(data.inputs["text"], torch.full((3, 2), 4))
    assert ids.shape == (3, 6) and (ids[:, :2] == 4).all()


def test_history_records_the_surrogates_reliance_on_the_noise():
    from mmunlearn.protectors.minmin import run_min_min

    data = make_captions(n=16)
    kw = {"outer_iters": 2, "surrogate_steps": 1, "pgd_steps": 2, "batch_size": 8, "progress": False}
    noisy = run_min_min(data, tiny_model(), MinMinSettings(epsilon=8 / 255, trigger_len=2, trigger_iters=1,
                                                           hotflip_candidates=2, **kw), len(VOCAB))  # fmt: skip
    assert len(noisy.history) == 2
    for h in noisy.history:
        assert {"loss", "accuracy", "loss_without_noise", "accuracy_without_noise"} <= set(h)
        assert 0 <= h["accuracy_without_noise"] <= 1 and h["loss_without_noise"] > 0
    # PGD descends the loss of the pairs it perturbs, so removing the noise cannot help the surrogate much
    assert noisy.history[-1]["loss"] <= noisy.history[-1]["loss_without_noise"] + 0.05
    text_only = run_min_min(data, tiny_model(), MinMinSettings(epsilon=None, trigger_len=2, trigger_iters=1,
                                                               hotflip_candidates=2, **kw), len(VOCAB))  # fmt: skip
    assert "loss_without_noise" not in text_only.history[-1]
