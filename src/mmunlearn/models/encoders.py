"""Small encoders that run fast on a laptop CPU: a conv net for images and log-mel spectrograms, a per-frame
conv net with temporal pooling for short videos, a small residual net for images (a second image
architecture, for transfer experiments), and a tiny transformer for word-id sequences."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError, DataError

VIDEO_POOLINGS = ("mean", "attention")
"""How `VideoEncoder` pools its per-frame features over time."""


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.GroupNorm(min(8, c_out), c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ConvEncoder(nn.Module):
    """Three conv blocks (each halves the resolution) and a linear projection of the flattened map.

    The map is flattened, not average-pooled, so that where things are (left of, above) survives.

    Args:
        in_shape: (C, H, W) of one input; H and W are padded up to a multiple of 8 if needed.
        out_dim: feature size.
        width: channels of the first block (doubled in each later block).
        standardize: normalise each input to zero mean and unit variance first (for log-mel inputs,
            whose scale depends on recording gain).
    """

    def __init__(
        self, in_shape: tuple[int, int, int], out_dim: int, width: int = 32, standardize: bool = False
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        self.standardize = standardize
        self.pad = ((-w) % 8, (-h) % 8)
        self.blocks = nn.Sequential(
            _conv_block(c, width), _conv_block(width, 2 * width), _conv_block(2 * width, 4 * width)
        )
        flat = 4 * width * ((h + self.pad[1]) // 8) * ((w + self.pad[0]) // 8)
        self.proj = nn.Linear(flat, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Encode a batch.

        Args:
            x: (B, C, H, W), or (B, H, W) for single-channel inputs such as log-mel spectrograms.

        Returns:
            (B, out_dim) features.
        """
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if self.standardize:
            mu = x.mean(dim=(1, 2, 3), keepdim=True)
            sd = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-5)
            x = (x - mu) / sd
        if any(self.pad):
            x = nn.functional.pad(x, (0, self.pad[0], 0, self.pad[1]))
        return self.proj(self.blocks(x).flatten(1))


class VideoEncoder(nn.Module):
    """A `ConvEncoder` applied to every frame (shared weights), then pooled over time.

    Pooling ``"mean"`` averages the frame features; ``"attention"`` weighs them by a softmax over frames of a
    learned score (a small tanh MLP of each frame's features, attention-based MIL pooling), so the model can
    attend to the frames that show the most.

    Args:
        in_shape: (T, C, H, W) of one clip (the weights do not depend on T: clips of any length are accepted).
        out_dim: feature size.
        width: channels of the first conv block of the frame encoder.
        pooling: ``"mean"`` or ``"attention"``.

    Raises:
        ConfigError: an unknown ``pooling``.
    """

    def __init__(
        self, in_shape: tuple[int, int, int, int], out_dim: int, width: int = 32, pooling: str = "mean"
    ) -> None:
        super().__init__()
        if pooling not in VIDEO_POOLINGS:
            raise ConfigError(f"unknown video pooling {pooling!r}; choose one of {', '.join(VIDEO_POOLINGS)}")
        _, c, h, w = in_shape
        self.pooling = pooling
        self.frames = ConvEncoder((c, h, w), out_dim, width)
        self.score = (
            nn.Sequential(nn.Linear(out_dim, out_dim), nn.Tanh(), nn.Linear(out_dim, 1))
            if pooling == "attention"
            else None
        )

    def frame_features(self, x: Tensor) -> Tensor:
        """Per-frame features of clips (B, T, C, H, W) float in [0, 1]. Returns (B, T, out_dim).

        Raises:
            DataError: the input is not 5-dimensional.
        """
        if x.dim() != 5:
            raise DataError(f"video input must be (B, T, C, H, W), got shape {tuple(x.shape)}")
        b, t = x.shape[:2]
        return self.frames(x.flatten(0, 1)).view(b, t, -1)

    def frame_weights(self, feats: Tensor) -> Tensor:
        """Pooling weights (B, T) of per-frame features (B, T, D): uniform for mean pooling."""
        if self.score is None:
            return feats.new_full(feats.shape[:2], 1.0 / feats.shape[1])
        return torch.softmax(self.score(feats).squeeze(-1), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """Encode a batch of clips (B, T, C, H, W). Returns (B, out_dim) features."""
        feats = self.frame_features(x)
        if self.score is None:
            return feats.mean(1)
        return (self.frame_weights(feats).unsqueeze(-1) * feats).sum(1)


class ResidualBlock(nn.Module):
    """Two 3x3 convs with GroupNorm and a skip connection; ``stride`` 2 halves the resolution.

    Args:
        c_in: input channels.
        c_out: output channels (a 1x1 conv matches the skip path when shape changes).
        stride: stride of the first conv and of the skip projection.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(min(8, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.GroupNorm(min(8, c_out), c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_in, H, W) -> (B, c_out, H / stride, W / stride)."""
        h = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(h)) + self.skip(x))


class ResNetEncoder(nn.Module):
    """A small ResNet: a conv stem, three residual stages, a linear projection of the flattened map.

    Stages: stem (width, full resolution) -> block(width, stride 2) -> block(2 width, stride 2) ->
    block(4 width, stride 2), so a 32x32 input ends as a 4 width x 4 x 4 map, like `ConvEncoder`. The
    map is flattened rather than average-pooled, so that positions (left of, above) survive. It differs
    from `ConvEncoder` in its skip connections, strided convs instead of max-pooling and normalisation
    on every conv: a different architecture for surrogate-to-victim transfer tests.

    Args:
        in_shape: (C, H, W) of one input; H and W are padded up to a multiple of 8 if needed.
        out_dim: feature size.
        width: channels of the stem (doubled in each later stage).
    """

    def __init__(self, in_shape: tuple[int, int, int], out_dim: int, width: int = 32) -> None:
        super().__init__()
        c, h, w = in_shape
        self.pad = ((-w) % 8, (-h) % 8)
        self.stem = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1, bias=False), nn.GroupNorm(min(8, width), width), nn.ReLU(inplace=True)
        )
        self.stages = nn.Sequential(
            ResidualBlock(width, width, stride=2),
            ResidualBlock(width, 2 * width, stride=2),
            ResidualBlock(2 * width, 4 * width, stride=2),
        )
        flat = 4 * width * ((h + self.pad[1]) // 8) * ((w + self.pad[0]) // 8)
        self.proj = nn.Linear(flat, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Encode a batch.

        Args:
            x: (B, C, H, W) images.

        Returns:
            (B, out_dim) features.
        """
        if any(self.pad):
            x = nn.functional.pad(x, (0, self.pad[0], 0, self.pad[1]))
        return self.proj(self.stages(self.stem(x)).flatten(1))


class TextEncoder(nn.Module):
    """Token + position embeddings, a small pre-norm transformer, mean pooling over real tokens.

    Args:
        vocab_size: number of token ids (0 = padding).
        max_len: longest id row.
        out_dim: feature size.
        dim: model width.
        layers: transformer layers.
        heads: attention heads.
    """

    def __init__(
        self, vocab_size: int, max_len: int, out_dim: int, dim: int = 128, layers: int = 2, heads: int = 4
    ) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, ids: Tensor, token_embeddings: Tensor | None = None) -> Tensor:
        """Encode id rows.

        Args:
            ids: int64 (B, L), 0 = padding.
            token_embeddings: optional (B, L, dim) replacement of ``self.token(ids)``, so that attacks such
                as HotFlip can take gradients with respect to the embeddings.

        Returns:
            (B, out_dim) features.
        """
        real = ids != 0
        emb = self.token(ids) if token_embeddings is None else token_embeddings
        h = self.transformer(emb + self.pos[: ids.shape[1]], src_key_padding_mask=~real)
        h = self.norm(h) * real.unsqueeze(-1)
        pooled = h.sum(1) / real.sum(1, keepdim=True).clamp_min(1)
        return self.proj(pooled)
