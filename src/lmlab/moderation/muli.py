"""MULI: sparse (L1) logistic regression on the first reply token's log-odds vector (Hu et al. 2024).

Features (the paper's code): p = softmax(first-token logits), f = log p - log(1 - p) for every
vocabulary token, standardised with the training set's mean and (unbiased) standard deviation plus
1e-10; tokens whose training std is 0 are zeroed ("deterministic tokens").

Objective (the paper): mean_i c_i BCE(sigmoid(w.f_i + b), y_i) + lam * ||[w; b]||_1, with c_i =
#neg/#pos for toxic rows and 1 otherwise (``pos_weight``), lam = 1e-3. Two solvers:

- ``solver="sgd"`` (default): the paper's procedure, SGD with lr 5e-4, 500 epochs, batch 128, from
  ``nn.Linear``'s random init. With these settings the L1 term moves each weight by at most
  lr * lam * steps (about 2e-3 here), so the fit is regularised mostly by the short optimisation.
- ``solver="liblinear"``: the exact minimiser of the same objective with scikit-learn's liblinear
  (coordinate descent, true zeros): dividing by lam gives liblinear's C * sum_i c_i loss_i + ||w||_1
  with C = 1 / (n * lam); liblinear penalises the intercept like a weight (its ``intercept_scaling``
  column), as the paper's ||[w; b]||_1 does. Written because a plain L1 logistic regression is what
  the objective says; it overfits far more at lam = 1e-3 (measured in the muli study).

Saved: only the tokens with a non-zero weight (index, weight, mean, std) and the intercept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.moderation.base import DetectorError, StudyDetector, ToxicityScorer, check_same_lm, sigmoid
from lmlab.moderation.features import FirstTokenFeatures, log_odds

MIN_STD = 1e-10


class MULIDetector(ToxicityScorer):
    kind = "muli"
    needs_lm = True
    inputs = "logits"

    @classmethod
    def from_study(cls, cfg: Any, features: Any = None) -> list[StudyDetector]:
        """The study's main detector with ``cfg.solver`` and ``cfg.lam``; with ``cfg.also_exact`` also the same
        fitted by the other solver (reported only)."""
        def make(solver: str) -> Any:
            return lambda: cls(features, lam=cfg.lam, solver=solver, model_spec=cfg.lm.model, seed=cfg.seed,
                               epochs=getattr(cfg, "epochs", 500), batch_size=getattr(cfg, "sgd_batch_size", 128))

        out = [StudyDetector("muli", "MULI (first-token logits)", make(cfg.solver), role="main", sweep="MULI",
                             report=lambda d: {("muli",): {**d.fit_info, "top_tokens": d.top_tokens(15)}})]
        if cfg.also_exact:
            other = "liblinear" if cfg.solver == "sgd" else "sgd"
            label = f"MULI, {'exact L1 optimum (liblinear)' if other == 'liblinear' else 'paper SGD'}"
            out.append(StudyDetector(f"muli-{other}", label, make(other), role="variant",
                                     report=lambda d: {(f"muli_{other}",): {**d.fit_info, "top_tokens": d.top_tokens(10)}}))
        return out

    def fit_inputs(self, X: np.ndarray, y: Any) -> MULIDetector:
        return self.fit_logits(X, y)

    def decision_inputs(self, X: np.ndarray) -> np.ndarray:
        return self.decision_logits(X)

    def __init__(self, features: FirstTokenFeatures | None = None, lam: float = 1e-3, solver: str = "sgd",
                 lr: float = 5e-4, epochs: int = 500, batch_size: int = 128, max_iter: int = 1000, tol: float = 1e-4,
                 model_spec: str = "default", seed: int = 0):
        if lam <= 0:
            raise DetectorError(f"MULIDetector.lam must be > 0, got {lam}")
        if solver not in ("sgd", "liblinear"):
            raise DetectorError(f"MULIDetector.solver: {solver!r}; use 'sgd' (the paper's) or 'liblinear' (exact L1)")
        self.solver = solver
        self.lr, self.epochs, self.batch_size = lr, epochs, batch_size
        self.features = features
        self.lam = lam
        self.max_iter = max_iter
        self.tol = tol
        self.model_spec = model_spec
        self.seed = seed  # liblinear shuffles its coordinates with it: fixed seed, identical detector
        self.idx = np.zeros(0, dtype=np.int64)
        self.w = np.zeros(0)
        self.mean = np.zeros(0)
        self.std = np.ones(0)
        self.b = 0.0
        self.vocab_size = 0
        self.fit_info: dict[str, Any] = {}

    # -- training ----------------------------------------------------------------------------
    def fit_logits(self, logits: np.ndarray, y: Any) -> MULIDetector:
        y = np.asarray(y).astype(np.int64)
        n_pos, n_neg = int(y.sum()), int((1 - y).sum())
        if n_pos == 0 or n_neg == 0:
            raise DetectorError("MULIDetector.fit: the training labels need both toxic and benign examples")
        f = log_odds(logits).astype(np.float64)
        mean = f.mean(0)
        std = f.std(0, ddof=1) + MIN_STD
        keep = std > MIN_STD
        z = np.where(keep, (f - mean) / std, 0.0)
        n = len(y)
        info: dict[str, Any] = {"solver": self.solver, "n_train": n, "n_pos": n_pos, "n_neg": n_neg,
                                "pos_weight": n_neg / n_pos, "lam": self.lam, "n_constant_tokens": int((~keep).sum())}
        if self.solver == "sgd":
            w, b, extra = self._fit_sgd(z, y, n_neg / n_pos)
        else:
            w, b, extra = self._fit_liblinear(z, y, n_neg / n_pos)
        # Tokens constant in training are masked at test time too, as the paper's code does: their stored std is
        # MIN_STD, so a test prompt where such a token moves would otherwise score around +-1e10.
        w = np.where(keep, w, 0.0)
        nz = np.flatnonzero(w)
        self.idx, self.w = nz.astype(np.int64), w[nz].astype(np.float64)
        self.mean, self.std = mean[nz], std[nz]
        self.b = float(b)
        self.vocab_size = int(f.shape[1])
        self.fit_info = {**info, **extra, "n_nonzero": int(len(nz))}
        return self

    def _fit_liblinear(self, z: np.ndarray, y: np.ndarray, pos_weight: float) -> tuple[np.ndarray, float, dict]:
        """The exact minimiser of the paper's objective (true zeros)."""
        from sklearn.linear_model import LogisticRegression

        n = len(y)
        clf = LogisticRegression(C=1.0 / (n * self.lam), l1_ratio=1.0, solver="liblinear", intercept_scaling=1.0,
                                 class_weight={0: 1.0, 1: pos_weight}, max_iter=self.max_iter, tol=self.tol,
                                 random_state=self.seed)
        clf.fit(z, y)
        return clf.coef_[0], float(clf.intercept_[0]), {"C": 1.0 / (n * self.lam), "n_iter": int(np.max(clf.n_iter_))}

    def _fit_sgd(self, z: np.ndarray, y: np.ndarray, pos_weight: float) -> tuple[np.ndarray, float, dict]:
        """The paper's procedure: ``nn.Linear``'s default init (uniform +-1/sqrt(d), seeded), plain SGD, ``epochs``
        passes over the data in order (its DataLoader does not shuffle) in batches of ``batch_size``, loss per
        batch = mean BCE-with-logits (pos_weight) + lam * ||[w; b]||_1, whose subgradient uses sign(0) = 0 as
        torch's does. Written in NumPy (the gradient is two lines): torch's per-step overhead made it 10x slower
        on a busy CPU. Few weights reach exactly 0 (a subgradient method)."""
        rng = np.random.default_rng(self.seed)
        d = z.shape[1]
        bound = 1.0 / np.sqrt(d)
        w = rng.uniform(-bound, bound, d).astype(np.float32)
        b = np.float32(rng.uniform(-bound, bound))
        X = z.astype(np.float32)
        Y = y.astype(np.float32)
        lr, lam, pw = np.float32(self.lr), np.float32(self.lam), np.float32(pos_weight)
        losses = []
        for _ in range(self.epochs):
            for i in range(0, len(Y), self.batch_size):
                xb, yb = X[i:i + self.batch_size], Y[i:i + self.batch_size]
                s = xb @ w + b
                p = 1 / (1 + np.exp(-s))
                # d/ds of -[pw y log p + (1 - y) log(1 - p)]
                g = (p * (pw * yb + 1 - yb) - pw * yb) / np.float32(len(yb))
                w -= lr * (xb.T @ g + lam * np.sign(w))
                b -= lr * (g.sum() + lam * np.sign(b))
            ls = np.logaddexp(0, -s) * pw * yb + np.logaddexp(0, s) * (1 - yb)
            losses.append(float(ls.mean() + lam * (np.abs(w).sum() + abs(b))))
        return (w.astype(np.float64), float(b),
                {"lr": self.lr, "epochs": self.epochs, "batch_size": self.batch_size,
                 "loss_first_epoch": round(losses[0], 5), "loss_last_epoch": round(losses[-1], 5)})

    def fit(self, prompts: Sequence[str], y: Any) -> MULIDetector:
        return self.fit_logits(self._features().logits(prompts), y)

    # -- scoring -----------------------------------------------------------------------------
    def decision_logits(self, logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape[1] != self.vocab_size:
            raise DetectorError(f"MULIDetector: logits of shape {logits.shape}; this detector expects (n, {self.vocab_size})")
        f = log_odds(logits)[:, self.idx].astype(np.float64)
        return ((f - self.mean) / self.std) @ self.w + self.b

    def decision_function(self, prompts: Sequence[str]) -> np.ndarray:
        return self.decision_logits(self._features().logits(prompts))

    def score_logits(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(self.decision_logits(logits))

    def _features(self) -> FirstTokenFeatures:
        if self.features is None:
            raise DetectorError("MULIDetector has no model attached; pass features=FirstTokenFeatures(lm, ...)")
        return self.features

    def top_tokens(self, k: int = 15, tokenizer: Any = None) -> list[dict[str, Any]]:
        """The k largest positive and k most negative weights, with the token text where a tokenizer is known."""
        tok = tokenizer if tokenizer is not None else (self.features.lm.tokenizer if self.features is not None else None)
        order = np.argsort(self.w)
        picks = list(order[::-1][:k]) + [i for i in order[:k] if self.w[i] < 0]
        out = []
        for i in dict.fromkeys(int(j) for j in picks if self.w[j] != 0):
            tid = int(self.idx[i])
            out.append({"token_id": tid, "token": tok.decode([tid]) if tok is not None else str(tid),
                        "weight": round(float(self.w[i]), 5)})
        return out

    # -- saving ------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        feats = self.features.meta if self.features is not None else {}
        return {**feats, "model_spec": self.model_spec, "lam": self.lam, "solver": self.solver, "vocab_size": self.vocab_size, "b": self.b,
                "fit_info": self.fit_info}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"idx": self.idx, "w": self.w, "mean": self.mean, "std": self.std}

    @classmethod
    def load(cls, path: str | Path, features: FirstTokenFeatures | None = None) -> MULIDetector:
        meta, arr = cls._read(path)
        if features is not None:
            check_same_lm(meta, features, path)
        det = cls(features, lam=float(meta["lam"]), solver=meta.get("solver", "sgd"), model_spec=meta.get("model_spec", "default"))
        det.idx, det.w, det.mean, det.std = arr["idx"].astype(np.int64), arr["w"], arr["mean"], arr["std"]
        det.b, det.vocab_size = float(meta["b"]), int(meta["vocab_size"])
        det.threshold = float(meta.get("threshold", 0.5))
        det.fit_info = meta.get("fit_info", {})
        det.saved_meta = meta
        return det
