"""Ha & Schmidhuber's World Models (2018): V (ConvVAE), M (MDN-RNN), C (linear, CMA-ES in the dream)."""

from worldmodel.vmc.controller import LinearController
from worldmodel.vmc.dream import DreamConfig, dream_returns, evolve_controller
from worldmodel.vmc.mdn_rnn import MDNRNN, mdn_nll, sample_mixture
from worldmodel.vmc.pipeline import VMCConfig, run_vmc
from worldmodel.vmc.vae import ConvVAE

__all__ = [
    "MDNRNN",
    "ConvVAE",
    "DreamConfig",
    "LinearController",
    "VMCConfig",
    "dream_returns",
    "evolve_controller",
    "mdn_nll",
    "run_vmc",
    "sample_mixture",
]
