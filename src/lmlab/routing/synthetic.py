"""A synthetic low-rank correctness matrix (the spec's CPU target): y ~ Bernoulli(sigmoid(<a_m, b_q> + c_q)).

Questions fall into ``n_benchmarks`` families; each model gets a planted ``specialty`` (one family) on
which it is ``boost`` logits stronger, so a router has something to find and a probe has an attribute to
recover. The question features are ``b_q`` and the family one-hot mapped to ``feature_dim`` dimensions by
a fixed random matrix, plus noise.

>>> m, x = synthetic_matrix(20, 100, seed=0)
>>> m.labels.shape, x.shape, sorted(set(m.benchmarks))[:2]
((20, 100), (100, 32), ['b0', 'b1'])
"""

from __future__ import annotations

import numpy as np

from lmlab.routing.data import CorrectnessMatrix


def synthetic_matrix(n_models: int = 100, n_questions: int = 5000, rank: int = 8, n_benchmarks: int = 4,
                     feature_dim: int = 32, boost: float = 2.0, noise: float = 0.1, seed: int = 0
                     ) -> tuple[CorrectnessMatrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n_models, rank)) / np.sqrt(rank)
    b = rng.normal(size=(n_questions, rank))
    c = rng.normal(scale=0.5, size=n_questions)
    fam = rng.integers(0, n_benchmarks, size=n_questions)
    spec = rng.integers(0, n_benchmarks, size=n_models)
    logits = a @ b.T + c[None, :] + boost * (spec[:, None] == fam[None, :]) - boost / n_benchmarks
    y = (rng.random(logits.shape) < 1 / (1 + np.exp(-logits))).astype(np.int8)
    latent = np.concatenate([b, np.eye(n_benchmarks)[fam] * 2.0], axis=1)
    mix = rng.normal(size=(latent.shape[1], feature_dim)) / np.sqrt(latent.shape[1])
    x = (latent @ mix + noise * rng.normal(size=(n_questions, feature_dim))).astype(np.float32)
    m = CorrectnessMatrix(y, [f"model{i}" for i in range(n_models)], None,
                          [f"synthetic question {j}" for j in range(n_questions)],
                          [f"b{f}" for f in fam], {"specialty": [f"b{s}" for s in spec]},
                          {"source": "synthetic", "seed": seed, "rank": rank})
    return m, x
