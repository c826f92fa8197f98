"""EmbedLLM's encoder-decoder (Zhuang et al., ICLR 2025, arXiv 2410.02223): one compact vector per model.

As in the reference code (``richardzhuang0412/EmbedLLM``, ``algorithm/mf.py``, class ``TextMF``)::

    u_m  = P[m]                              model embedding, P in R^{M x d}, d = 232
    e~_q = e_q + alpha * N(0, I)             noise on the frozen question embedding, training only (alpha 0.05)
    v_q  = W_q e~_q + b_q                    question projection
    z_mq = W_c (u_m * v_q) + b_c             two logits (wrong, right)
    loss = CE(z_mq, y_mq);  prediction argmax z;  routing argmax_m (z_mq,1 - z_mq,0)

Adam, lr 1e-4, weight decay 1e-5, batch 2,048, 50 epochs, seed 42 (the reference defaults,
:class:`EmbedLLMConfig`). Deviation: training entries are shuffled every epoch (the reference's
DataLoader keeps the CSV order, which is already shuffled by question there).

The question embeddings ``e_q`` are the ``features`` given to :meth:`Router.fit`: sentence embeddings of
the question text (the paper: all-mpnet-base-v2; here :func:`lmlab.lm.embed.load_embedder`, MiniLM),
or for the lmlab zoo the bag of tokens of the question, for which ``W_q`` *is* a learned embedding table
of the zoo's vocabulary (column j of ``W_q`` is token j's vector; ``v_q`` is their mean).

After training the decoder is folded into numpy arrays (``P * (w_1 - w_0)``), so one routing decision
is one small matrix-vector product (``benchmarks/routing_latency.py``).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lmlab.config import Config, ConfigError
from lmlab.routing.base import Router
from lmlab.routing.data import MISSING, CorrectnessMatrix, RoutingDataError


@dataclass(frozen=True)
class EmbedLLMConfig(Config):
    """The reference code's defaults (``mf.py`` argparse)."""

    dim: int = 232
    alpha: float = 0.05
    lr: float = 1e-4
    weight_decay: float = 1e-5
    batch_size: int = 2048
    epochs: int = 50
    seed: int = 42
    progress: bool = True
    max_steps: int | None = None  # stop after this many Adam steps (benchmarks); None: all epochs

    def validate(self) -> None:
        for name in ("dim", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"EmbedLLMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("EmbedLLMConfig.max_steps must be >= 1 or null")
        if self.lr <= 0 or self.alpha < 0 or self.weight_decay < 0:
            raise ConfigError("EmbedLLMConfig: lr must be > 0, alpha and weight_decay >= 0")


class TextMF(nn.Module):
    """The network: model table P, frozen question table, projection, element-wise product, linear decoder."""

    def __init__(self, question_embeddings: torch.Tensor, n_models: int, dim: int, alpha: float):
        super().__init__()
        self.P = nn.Embedding(n_models, dim)
        self.register_buffer("Q", question_embeddings.float())  # frozen, as in the paper
        self.text_proj = nn.Linear(question_embeddings.shape[1], dim)
        self.classifier = nn.Linear(dim, 2)
        self.alpha = alpha

    def forward(self, models: torch.Tensor, questions: torch.Tensor, noise: bool = False) -> torch.Tensor:
        q = self.Q[questions]
        if noise and self.alpha > 0:
            q = q + torch.randn_like(q) * self.alpha
        return self.classifier(self.P(models) * self.text_proj(q))


class EmbedLLMRouter(Router):
    name = "embedllm"
    checkpoint = True

    @classmethod
    def from_study(cls, cfg: Any) -> EmbedLLMRouter:
        """``cfg.router`` with the study's seed and progress."""
        return cls(cfg.router.replace(seed=cfg.seed, progress=cfg.progress))
    needs_features = True

    def __init__(self, cfg: EmbedLLMConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or EmbedLLMConfig()
        self.history: list[dict[str, float]] = []

    # -- training ----------------------------------------------------------------------------------
    def _fit(self, matrix: CorrectnessMatrix, train_questions: np.ndarray) -> None:
        from tqdm.auto import tqdm

        cfg = self.cfg
        assert self.features is not None
        y = matrix.labels[:, train_questions]
        mi, qj = np.nonzero(y != MISSING)
        if len(mi) == 0:
            raise RoutingDataError("embedllm: the training questions have no observed labels")
        models = torch.from_numpy(mi.astype(np.int64))
        questions = torch.from_numpy(train_questions[qj].astype(np.int64))
        labels = torch.from_numpy(y[mi, qj].astype(np.int64))
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        net = TextMF(torch.from_numpy(self.features), matrix.n_models, cfg.dim, cfg.alpha)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        n = len(labels)
        net.train()
        self.steps = 0
        bar = tqdm(range(cfg.epochs), desc="embedllm", disable=not cfg.progress, dynamic_ncols=True, leave=False)
        for epoch in bar:
            order = torch.randperm(n, generator=gen)
            total, batches = 0.0, 0
            for start in range(0, n, cfg.batch_size):
                if cfg.max_steps is not None and self.steps >= cfg.max_steps:
                    break
                self.steps += 1
                b = order[start:start + cfg.batch_size]
                loss = loss_fn(net(models[b], questions[b], noise=True), labels[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
                batches += 1
            if batches == 0:
                break
            self.history.append({"epoch": epoch + 1, "train_loss": total / batches, "steps": batches})
            bar.set_postfix(loss=f"{total / batches:.4f}", refresh=False)
        bar.close()
        self.net = net.eval()
        self._fold()

    def _fold(self) -> None:
        """Numpy copies for inference: z_1 - z_0 = (P * w) v + b with w = W_c[1] - W_c[0]."""
        net = self.net
        with torch.no_grad():
            w = (net.classifier.weight[1] - net.classifier.weight[0]).double()
            self.model_embeddings = net.P.weight.detach().double().numpy().copy()
            # float32 for inference (what the features are): half the time of float64 for the same decisions
            self._p_eff = (net.P.weight.double() * w).float().numpy()  # (M, d)
            self._b = float(net.classifier.bias[1] - net.classifier.bias[0])
            self._w_diff = w.float().numpy()
            self._wq = np.ascontiguousarray(net.text_proj.weight.detach().float().numpy().T)  # (D, d)
            self._bq = net.text_proj.bias.detach().float().numpy().copy()

    # -- prediction --------------------------------------------------------------------------------
    def project(self, x: np.ndarray) -> np.ndarray:
        """v_q for feature rows x (n, D) -> (n, d)."""
        return np.asarray(x, dtype=np.float32) @ self._wq + self._bq

    def logit_margin(self, x: np.ndarray, models: np.ndarray | None = None) -> np.ndarray:
        """z_1 - z_0, (n, M) (or (n, len(models)))."""
        p = self._p_eff if models is None else self._p_eff[models]
        return self.project(x) @ p.T + self._b

    def _proba_features(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(self.logit_margin(x))

    def choose(self, question: Any, candidates: Any = None) -> str:
        # The fast path of the gateway: one projection, one (candidates x d) product, no torch.
        q = np.asarray(question)
        x = self.features[int(q)][None] if q.ndim == 0 else q[None]
        idx = self._candidate_index(candidates)
        return self.model_names[int(idx[int(np.argmax(self.logit_margin(x, idx)[0]))])]

    # -- a new model from a few answers (benchmark forecasting) -------------------------------------
    def fit_new_model(self, questions: np.ndarray, labels: np.ndarray, steps: int = 100) -> np.ndarray:
        """Embedding u of a model not in the matrix from its 0/1 answers to a few ``questions`` (indices).

        MAP under a Gaussian prior fitted to the known models' embeddings: u = mean(P) + (P - mean)^T a with
        a ~ N(0, I / M), so u ~ N(mean, empirical covariance) (a new model looks like a mix of known ones;
        with no answers it is the average model). The decoder is frozen, so the logit z = (u * w) . v_q + b
        is linear in a: a ridge-penalised logistic regression, solved with L-BFGS in torch.
        """
        v = torch.from_numpy((self.project(self.features[np.asarray(questions)]) * self._w_diff).astype(np.float64))
        y = torch.as_tensor(np.asarray(labels), dtype=torch.float64)
        P = torch.from_numpy(self.model_embeddings)
        mean = P.mean(0)
        basis = P - mean  # (M, d)
        a = torch.zeros(len(P), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([a], max_iter=steps, line_search_fn="strong_wolfe")
        base, proj = v @ mean + self._b, v @ basis.T  # (n,), (n, M)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            z = base + proj @ a
            loss = nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum") + 0.5 * len(P) * (a ** 2).sum()
            loss.backward()
            return loss

        if len(y):
            opt.step(closure)
        return (mean + basis.T @ a.detach()).numpy()

    def proba_for_embedding(self, u: np.ndarray, questions: np.ndarray) -> np.ndarray:
        """P(correct) of a model with embedding ``u`` on question indices."""
        return _sigmoid(self.project(self.features[np.asarray(questions)]).astype(np.float64)
                        @ (np.asarray(u) * self._w_diff) + self._b)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Plain containers only (tensors, lists, dicts of numbers and strings), written atomically: :meth:`load`
        reads them with ``weights_only=True``, so loading a file never runs code."""
        from lmlab.io import atomic_path

        state = {"cfg": self.cfg.to_dict(), "state": dict(self.net.state_dict()), "model_names": list(self.model_names),
                 "history": json.loads(json.dumps(self.history)), "n_models": len(self.model_names)}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    @classmethod
    def load(cls, path: str | Path, features: np.ndarray) -> EmbedLLMRouter:
        try:
            state = torch.load(Path(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ValueError(f"{path} is not a router saved by lmlab (it holds objects other than plain "
                             f"containers and tensors, refused without running them): {str(e).splitlines()[0]}") from None
        r = cls(EmbedLLMConfig.from_dict(state["cfg"]))
        r.features = np.asarray(features, dtype=np.float32)
        r.model_names = state["model_names"]
        r.history = state["history"]
        net = TextMF(torch.from_numpy(r.features), state["n_models"], r.cfg.dim, r.cfg.alpha)
        net.load_state_dict(state["state"])
        r.net = net.eval()
        r._fold()
        return r


def _sigmoid(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(z)


def n_parameters(n_models: int, text_dim: int, dim: int = 232) -> int:
    """Trainable parameters of the network (the question table is frozen)."""
    return n_models * dim + text_dim * dim + dim + 2 * dim + 2


__all__ = ["EmbedLLMConfig", "EmbedLLMRouter", "TextMF", "n_parameters"]
