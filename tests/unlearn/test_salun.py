"""SalUn's saliency mask selects exactly the top fraction of weights by |gradient|."""

import torch

from mmunlearn.models import build_model
from mmunlearn.unlearn.base import present_only
from mmunlearn.unlearn.salun import saliency_mask
from toy import make_av

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}


def test_mask_takes_exactly_k_salient_weights_not_the_zero_gradient_ties():
    model = build_model("multimodal-classifier", 0, **CFG)
    batch = present_only(make_av(32).full_batch(), ["image"])  # audio missing: its gradients are exactly 0
    loss = -torch.nn.functional.cross_entropy(model(batch), batch["label"])
    mask = saliency_mask(model, loss, 0.2)
    total = sum(p.numel() for p in model.parameters())
    assert sum(int(m.sum()) for m in mask.values()) == int(0.2 * total)
    audio = [n for n in mask if n.startswith("encoders.audio")]
    assert audio and not any(mask[n].any() for n in audio)
    # naive reference: the chosen weights are the largest |grad| ones
    model.zero_grad()
    (-torch.nn.functional.cross_entropy(model(batch), batch["label"])).backward()
    chosen = torch.cat([p.grad.abs()[mask[n]] for n, p in model.named_parameters()])
    rest = torch.cat([p.grad.abs()[~mask[n]] for n, p in model.named_parameters()])
    assert chosen.min() >= rest.max()
