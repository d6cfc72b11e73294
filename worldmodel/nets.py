"""Networks: MLPs with LayerNorm and SiLU, vector and 64x64 image encoders/decoders.

Vector inputs are symlog-squashed before encoding and vector reconstructions are
trained with a symlog MSE; images (``[..., 64, 64, C]``, uint8 or float in [0, 1])
are centred to [-0.5, 0.5] and reconstructed with a plain MSE.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from worldmodel.math import symlog


class MLP(nn.Sequential):
    """``layers`` x (Linear without bias -> LayerNorm -> SiLU), then an optional Linear.

    Shapes: ``[..., inp]`` -> ``[..., out]`` (``[..., units]`` when ``out`` is None).
    ``zero_out`` initialises the output layer to zero (DreamerV3 does so for the reward
    and value heads so that early predictions are 0).
    """

    def __init__(
        self, inp: int, out: int | None, units: int, layers: int, zero_out: bool = False
    ) -> None:
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [nn.Linear(inp if i == 0 else units, units, bias=False), nn.LayerNorm(units), nn.SiLU()]
        if out is not None:
            head = nn.Linear(units if layers else inp, out)
            if zero_out:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
            mods.append(head)
        super().__init__(*mods)
        self.out_dim = out if out is not None else units
        self.is_head = out is not None

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        # A head's outputs parametrise distributions and losses: float32 even under bf16 autocast.
        return out.float() if self.is_head else out


class VectorEncoder(nn.Module):
    """symlog then MLP. ``[..., D]`` -> ``[..., units]``."""

    def __init__(self, dim: int, units: int, layers: int) -> None:
        super().__init__()
        self.mlp = MLP(dim, None, units, max(layers, 1))
        self.out_dim = units

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(symlog(x))


class VectorDecoder(nn.Module):
    """MLP predicting ``symlog(x)``. ``feat [..., F]`` -> ``[..., D]`` (symlog space)."""

    def __init__(self, feat_dim: int, dim: int, units: int, layers: int) -> None:
        super().__init__()
        self.mlp = MLP(feat_dim, dim, units, layers)

    def forward(self, feat: Tensor) -> Tensor:
        return self.mlp(feat)

    def loss(self, feat: Tensor, target: Tensor) -> Tensor:
        """Symlog MSE summed over features: ``[..., F]``, ``[..., D]`` -> ``[...]``."""
        return (self(feat) - symlog(target)).pow(2).sum(-1)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of ``[N, C, H, W]`` feature maps."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def image_to_input(image: Tensor) -> Tensor:
    """``[..., H, W, C]`` uint8 (0..255) or float (0..1) -> float ``[..., C, H, W]`` in [-0.5, 0.5]."""
    x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    return x.movedim(-1, -3) - 0.5


class ConvEncoder(nn.Module):
    """Four stride-2 convolutions (kernel 4) with LayerNorm and SiLU, 64x64 -> 4x4.

    Channels ``depth, 2*depth, 4*depth, 8*depth``. Shapes: ``[..., 64, 64, C]`` ->
    ``[..., 8*depth*16]``.
    """

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        inp = channels
        for i in range(4):
            out = depth * 2**i
            mods += [nn.Conv2d(inp, out, 4, 2, 1, bias=False), ChannelNorm(out), nn.SiLU()]
            inp = out
        self.net = nn.Sequential(*mods, nn.Flatten())
        self.out_dim = inp * 4 * 4

    def forward(self, image: Tensor) -> Tensor:
        x = image_to_input(image)
        lead = x.shape[:-3]
        return self.net(x.reshape(-1, *x.shape[-3:])).reshape(*lead, self.out_dim)


class ConvDecoder(nn.Module):
    """Linear to ``8*depth x 4 x 4``, then four stride-2 transposed convolutions to 64x64.

    Shapes: ``feat [..., F]`` -> ``[..., C, 64, 64]`` in the centred [-0.5, 0.5] space.
    """

    def __init__(self, feat_dim: int, channels: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.proj = nn.Linear(feat_dim, 8 * depth * 16)
        mods: list[nn.Module] = []
        inp = 8 * depth
        for i in range(3):
            out = depth * 2 ** (2 - i)
            mods += [nn.ConvTranspose2d(inp, out, 4, 2, 1, bias=False), ChannelNorm(out), nn.SiLU()]
            inp = out
        mods.append(nn.ConvTranspose2d(inp, channels, 4, 2, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, feat: Tensor) -> Tensor:
        lead = feat.shape[:-1]
        x = self.proj(feat.reshape(-1, feat.shape[-1])).reshape(-1, 8 * self.depth, 4, 4)
        out = self.net(x).float()  # float32 even under bf16 autocast, as every head
        return out.reshape(*lead, *out.shape[1:])

    def loss(self, feat: Tensor, image: Tensor) -> Tensor:
        """MSE summed over pixels: ``[..., F]``, ``[..., 64, 64, C]`` -> ``[...]``."""
        return (self(feat) - image_to_input(image)).pow(2).sum((-3, -2, -1))
