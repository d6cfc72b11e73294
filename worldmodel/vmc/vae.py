"""V: the convolutional VAE of Ha & Schmidhuber (2018), 64x64x3 frames -> z of 32 dims.

Encoder: four stride-2 convolutions (kernel 4; 32, 64, 128, 256 channels; ReLU) to
``2 x 2 x 256``, then linear layers to the mean and log-variance of ``z``. Decoder: a
linear layer to ``1 x 1 x 1024`` and four stride-2 transposed convolutions (kernels 5,
5, 6, 6; 128, 64, 32, 3 channels) with a sigmoid output. The loss is the squared error
summed over pixels plus the KL to ``N(0, I)`` floored at ``kl_tolerance * z_dim`` nats
(the paper's 0.5 per dimension).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def frames_to_input(frames: Tensor) -> Tensor:
    """uint8 ``[..., 64, 64, 3]`` -> float ``[N, 3, 64, 64]`` in [0, 1] (leading dims flattened)."""
    x = frames.reshape(-1, *frames.shape[-3:]).float() / 255.0
    return x.permute(0, 3, 1, 2)


class ConvVAE(nn.Module):
    """The V model. Shapes: ``encode([N, 3, 64, 64]) -> (mu, logvar) [N, Z]``,
    ``decode([N, Z]) -> [N, 3, 64, 64]``."""

    def __init__(self, z_dim: int = 32, kl_tolerance: float = 0.5) -> None:
        super().__init__()
        self.z_dim, self.kl_tolerance = z_dim, kl_tolerance
        layers: list[nn.Module] = []
        channels = 3
        for out in (32, 64, 128, 256):
            layers += [nn.Conv2d(channels, out, 4, 2), nn.ReLU()]
            channels = out
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.mu = nn.Linear(1024, z_dim)
        self.logvar = nn.Linear(1024, z_dim)
        self.project = nn.Linear(z_dim, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, 2),
            nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, 2),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, 2),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 6, 2),
            nn.Sigmoid(),
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(self.project(z)[:, :, None, None])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Reparameterised pass: ``x [N, 3, 64, 64]`` -> ``(recon, mu, logvar)``."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Mean over the batch of ``sum (x - recon)^2 + max(KL, kl_tolerance * Z)``."""
        recon, mu, logvar = self(x)
        rec = (x - recon).pow(2).sum((1, 2, 3)).mean()
        kl = kl_to_standard_normal(mu, logvar).mean()
        total = rec + kl.clamp(min=self.kl_tolerance * self.z_dim)
        return total, {"vae/recon": rec.item(), "vae/kl": kl.item()}


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over the last dim: ``[N, Z] -> [N]``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
