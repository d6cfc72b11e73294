"""Evolve the linear controller C with CMA-ES (the ``cma`` package), wherever it is scored.

Ha & Schmidhuber score candidates in M's dream for VizDoom (:mod:`worldmodel.vmc.dream`)
and in the real environment for CarRacing (:func:`worldmodel.vmc.pipeline.real_fitness`);
this loop is the same for both: ask a population, score it, tell ``-score`` (``cma``
minimises), and every few generations score the distribution's mean on more rollouts.
"""

from __future__ import annotations

from collections.abc import Callable

import cma
import numpy as np
import torch
from torch import Tensor

from worldmodel.run import progress

Fitness = Callable[[Tensor, int], Tensor]  # (params [P, n], rollouts) -> mean return [P]


def evolve(
    num_params: int, fitness: Fitness, config: object, desc: str = "CMA-ES", x0: np.ndarray | None = None
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """CMA-ES from ``x0 [num_params]`` (``None``: zeros; a warm start, e.g. the current controller
    in iterative training) with step size ``config.sigma0`` for ``config.generations`` generations.

    ``config`` carries ``population``, ``rollouts`` (per candidate), ``sigma0``, ``seed``,
    ``eval_every`` and ``eval_rollouts`` (a `worldmodel.vmc.DreamConfig`). Every ``eval_every``
    generations (and after the last) the mean of the search distribution is scored on
    ``eval_rollouts`` rollouts (one candidate's score is too noisy to pick a winner from); the
    best-scoring mean is returned with one history row per generation (``best`` and ``mean``
    candidate return, ``sigma``, and ``evaluated`` when the mean was scored).
    """
    x0 = np.zeros(num_params) if x0 is None else np.asarray(x0, np.float64).reshape(-1)
    if x0.shape != (num_params,):
        raise ValueError(f"CMA-ES x0 has {x0.size} parameters, the controller {num_params}")
    es = cma.CMAEvolutionStrategy(
        x0,
        config.sigma0,
        {"popsize": config.population, "seed": config.seed + 1, "verbose": -9},
    )

    def score(params: np.ndarray, rollouts: int) -> Tensor:
        return fitness(torch.as_tensor(np.atleast_2d(params), dtype=torch.float32), rollouts)

    history, best, best_score = [], x0.copy(), -float("inf")
    bar = progress(range(config.generations), desc=desc)
    for gen in bar:
        solutions = es.ask()
        returns = score(np.stack(solutions), config.rollouts)
        es.tell(solutions, (-returns).tolist())
        row = {
            "generation": gen,
            "best": float(returns.max()),
            "mean": float(returns.mean()),
            "sigma": es.sigma,
        }
        if (gen + 1) % config.eval_every == 0 or gen + 1 == config.generations:
            row["evaluated"] = float(score(es.result.xfavorite, config.eval_rollouts)[0])
            if row["evaluated"] > best_score:
                best, best_score = np.array(es.result.xfavorite), row["evaluated"]
        history.append(row)
        bar.set_postfix(mean=f"{row['mean']:.1f}", best=f"{row['best']:.1f}", kept=f"{best_score:.1f}")
    return best, history
