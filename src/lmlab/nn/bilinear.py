"""The bilinear model of the reversal-curse theory (Zhu et al. 2024, arXiv 2405.04669, section 3).

Tokens have fixed embeddings ``E`` (M, d); the model is ``p(y | x) = softmax_y(e_x^T Theta e_y)`` and
is trained by full-batch gradient descent on facts ``x_i -> y_i`` from ``Theta = 0``. The gradient is

    grad L(Theta) = (1/N) sum_i e_{x_i} (E_{y ~ p(.|x_i)} e_y - e_{y_i})^T = (1/N) E_X^T (P - Y) E,

with ``E_X`` the embeddings of the inputs, ``P`` the model's probabilities and ``Y`` the one-hot
targets. So Theta stays in ``E_X^T C E`` for a coefficient matrix ``C`` (N, M) updated by
``C <- C - lr (P - Y) / N``, and all logits are ``K_X C K`` with the Gram matrix ``K = E E^T``:
:func:`train_bilinear` runs gradient descent in those coefficients, which is exact (tested against
descent on Theta itself) and costs O(N M^2) per step whatever ``d`` is, so the dimension sweep is cheap.

The reverse logit of a fact ``x -> y`` is ``e_y^T Theta e_x = sum_i <e_y, e_{x_i}> <g_i, e_x>``, a sum of
products of near-zero inner products: training ``x -> y`` barely moves ``y -> x``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


def bilinear_logits(theta: torch.Tensor, emb: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Logits (n, M) of ``p(. | x)`` for the input tokens ``inputs`` (n,)."""
    return emb[inputs] @ theta @ emb.T


def bilinear_loss(theta: torch.Tensor, emb: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of ``targets`` given ``inputs``."""
    return torch.nn.functional.cross_entropy(bilinear_logits(theta, emb, inputs), targets)


def bilinear_grad(theta: torch.Tensor, emb: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The closed-form gradient ``(1/N) E_X^T (P - Y) E`` of :func:`bilinear_loss` (the paper's gradient flow)."""
    probs = bilinear_logits(theta, emb, inputs).softmax(-1)
    probs[torch.arange(len(targets)), targets] -= 1.0
    return emb[inputs].T @ probs @ emb / len(targets)


def make_embeddings(n_tokens: int, d: int, seed: int, kind: str = "gaussian") -> torch.Tensor:
    """Fixed embeddings: rows drawn from N(0, I/d) (nearly orthogonal when d >> log M), or exactly orthonormal (d >= M)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "orthonormal":
        if d < n_tokens:
            raise ValueError(f"orthonormal embeddings need d >= number of tokens ({n_tokens}), got d={d}")
        q, _ = torch.linalg.qr(torch.randn(d, n_tokens, generator=g, dtype=torch.float64))
        return q.T.contiguous()
    if kind != "gaussian":
        raise ValueError(f"embedding kind must be 'gaussian' or 'orthonormal', got {kind!r}")
    return torch.randn(n_tokens, d, generator=g, dtype=torch.float64) / math.sqrt(d)


@dataclass
class BilinearRun:
    """History of one run: every ``eval_every`` steps the forward and reverse NLL and centred logits."""

    d: int
    steps: list[int] = field(default_factory=list)
    forward_nll: list[float] = field(default_factory=list)
    reverse_nll: list[float] = field(default_factory=list)
    forward_logit: list[float] = field(default_factory=list)  # mean over facts of the centred logit x -> y
    reverse_logit: list[float] = field(default_factory=list)  # mean over facts of the centred logit y -> x
    reverse_logit_rms: list[float] = field(default_factory=list)
    final_reverse_logits: list[float] = field(default_factory=list)  # per fact, at the end
    predicted_reverse_logits: list[float] = field(default_factory=list)  # first-order theory, per fact


def train_bilinear(n_pairs: int = 100, d: int = 256, steps: int = 3000, lr: float = 1.0, seed: int = 0,
                   embeddings: str = "gaussian", eval_every: int = 50) -> BilinearRun:
    """Gradient descent on facts ``A_i -> B_i`` (tokens ``i`` and ``n_pairs + i``, M = 2 n_pairs) from Theta = 0.

    Centred logits (a row's logit minus the row's mean) are what softmax sees, so the asymmetry is
    measured on them: the forward ``A_i -> B_i`` rises, the reverse ``B_i -> A_i`` should not.
    The first-order prediction of the theory for each reverse logit is
    ``f * sum_i <e_{B_j}, e_{A_i}> <e_{B_i}, e_{A_j}>`` (``f`` the mean forward logit): it follows from
    ``Theta ~ f sum_i e_{A_i} e_{B_i}^T`` and has size about ``f sqrt(N) / d``.
    """
    n, m = n_pairs, 2 * n_pairs
    emb = make_embeddings(m, d, seed, embeddings)
    a, b = torch.arange(n), torch.arange(n, m)
    gram = emb @ emb.T
    coef = torch.zeros(n, m, dtype=torch.float64)  # Theta = E_A^T coef E
    onehot = torch.zeros(n, m, dtype=torch.float64)
    onehot[torch.arange(n), b] = 1.0
    run = BilinearRun(d)
    for t in range(steps + 1):
        logits = gram[:, a] @ coef @ gram  # (M, M): row x, column y
        logp = logits.log_softmax(-1)
        if t % eval_every == 0 or t == steps:
            centred = logits - logits.mean(1, keepdim=True)
            rev = centred[b, a]
            run.steps.append(t)
            run.forward_nll.append(-logp[a, b].mean().item())
            run.reverse_nll.append(-logp[b, a].mean().item())
            run.forward_logit.append(centred[a, b].mean().item())
            run.reverse_logit.append(rev.mean().item())
            run.reverse_logit_rms.append(rev.pow(2).mean().sqrt().item())
        if t < steps:
            coef -= lr * (logp[a].exp() - onehot) / n
    cross = gram[b][:, a]  # cross[j, i] = <e_{B_j}, e_{A_i}>
    run.final_reverse_logits = rev.tolist()
    run.predicted_reverse_logits = (run.forward_logit[-1] * (cross * cross.T).sum(1)).tolist()
    return run
