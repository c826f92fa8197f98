"""k-th order Markov sources over a small alphabet, with their exact entropy rate (version ``markov/1``).

Two families (Rajaraman, Jiao, Ramchandran, arXiv 2404.08335; Makkuva et al., "Attention with Markov"):

- ``switching``: binary, ``x_n = x_{n-k} XOR Bernoulli(delta)``: the symbol from k steps back is
  flipped with probability ``delta``. The stationary law is uniform, so the best character unigram
  has cross-entropy ln 2, while the entropy rate is ``H_b(delta)``.
- ``random``: ``P(. | last k symbols)`` drawn once per context from Dirichlet(1, ..., 1) (for a binary
  alphabet: ``P(1 | context) ~ U(0, 1)``, as in Makkuva et al.), seeded by ``chain_seed``.

Symbols are written as the characters ``0 1 2 ...`` (``ALPHABET``), so a sample is a string that any
tokenizer can read. A context is the integer ``sum_i x_{n-k+i} m^(k-1-i)`` (oldest symbol most
significant); ``transition[c, a] = P(x_n = a | context c)``.

The entropy rate is exact: ``H_inf = sum_c pi(c) H(P[c, :])`` with ``pi`` the stationary law of the
chain on contexts (solved as a linear system), and the best character unigram is ``H(pi_1)`` with
``pi_1`` the stationary law of one symbol.

>>> src = MarkovSource(MarkovConfig(kind="switching", order=2, delta=0.2), seed=0)
>>> round(src.entropy_rate, 4), round(src.unigram_entropy, 4)   # H_b(0.2) and ln 2
(0.5004, 0.6931)
>>> src.sample_text(1, 24, src.rng(0))[0]
'101001111111010101010000'

Sequences start from the stationary law, so every window is stationary. ``sample(..., rng(step))``
is a pure function of ``(seed, step)``: training data is reproducible and resumable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lmlab.config import Config, ConfigError

VERSION = "markov/1"
ALPHABET = "0123456789abcdef"
EVAL_STREAM = 2**31  # seeds for eval sets and tokenizer-training text live far from training steps
MAX_CONTEXTS = 4096


def binary_entropy(p: float) -> float:
    """H_b(p) in nats."""
    return 0.0 if p in (0.0, 1.0) else -p * math.log(p) - (1 - p) * math.log(1 - p)


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis`` (0 log 0 = 0)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=axis)


@dataclass(frozen=True)
class MarkovConfig(Config):
    """One source. ``delta`` is used by ``switching``, ``chain_seed`` by ``random``."""

    kind: Literal["switching", "random"] = "switching"
    order: int = 2  # k
    delta: float = 0.2
    alphabet_size: int = 2
    chain_seed: int = 0

    def validate(self) -> None:
        if self.order < 1:
            raise ConfigError(f"MarkovConfig.order must be >= 1, got {self.order}")
        if not 2 <= self.alphabet_size <= len(ALPHABET):
            raise ConfigError(f"MarkovConfig.alphabet_size must be in [2, {len(ALPHABET)}], got {self.alphabet_size}")
        if self.kind == "switching" and self.alphabet_size != 2:
            raise ConfigError("MarkovConfig.alphabet_size must be 2 for kind='switching' (it flips bits)")
        if self.kind == "switching" and not 0 < self.delta < 1:
            raise ConfigError(f"MarkovConfig.delta must be in (0, 1), got {self.delta}")
        if self.alphabet_size ** self.order > MAX_CONTEXTS:
            raise ConfigError(f"MarkovConfig: alphabet_size ** order = {self.alphabet_size ** self.order} contexts; "
                              f"at most {MAX_CONTEXTS} are supported (lower order)")

    @property
    def label(self) -> str:
        if self.kind == "switching":
            return f"switching k={self.order}, delta={self.delta:g}"
        return f"random k={self.order}, m={self.alphabet_size}, chain {self.chain_seed}"


class MarkovSource:
    """A k-th order Markov source: transition table, stationary law, entropy rate, seeded samples."""

    version = VERSION

    def __init__(self, cfg: MarkovConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = seed
        self.k, self.m = cfg.order, cfg.alphabet_size
        self.alphabet = ALPHABET[: self.m]
        self.n_contexts = self.m ** self.k
        self.transition = self._transition()
        self.stationary = stationary_contexts(self.transition, self.m)
        self.entropy_rate = float(self.stationary @ entropy(self.transition))
        # The newest symbol of a context is its last digit: pi_1(a) = sum of pi(c) with c % m == a.
        self.unigram = np.bincount(np.arange(self.n_contexts) % self.m, weights=self.stationary, minlength=self.m)
        self.unigram_entropy = float(entropy(self.unigram))

    def _transition(self) -> np.ndarray:
        ctx = np.arange(self.n_contexts)
        if self.cfg.kind == "switching":
            oldest = ctx // self.m ** (self.k - 1)  # x_{n-k}
            P = np.empty((self.n_contexts, 2))
            P[ctx, oldest] = 1 - self.cfg.delta
            P[ctx, 1 - oldest] = self.cfg.delta
            return P
        rng = np.random.default_rng(np.random.SeedSequence([self.cfg.chain_seed, self.k, self.m]))
        return rng.dirichlet(np.ones(self.m), size=self.n_contexts)

    def block_entropy(self, n: int) -> float:
        """H(X_1, ..., X_n) of a stationary sequence, exactly: H(first k symbols) + (n - k) H_inf (n >= k)."""
        if n < self.k:
            raise ValueError(f"block_entropy needs n >= order ({self.k}), got {n}")
        return float(entropy(self.stationary)) + (n - self.k) * self.entropy_rate

    def rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, step]))

    def sample(self, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """(n, length) int8 symbols; each row starts from the stationary law."""
        k, m = self.k, self.m
        out = np.empty((n, max(length, k)), dtype=np.int8)
        ctx = rng.choice(self.n_contexts, size=n, p=self.stationary)
        for i in range(k):
            out[:, i] = (ctx // m ** (k - 1 - i)) % m
        cum = np.cumsum(self.transition, axis=1)
        cum[:, -1] = 1.0
        u = rng.random((n, max(length - k, 0)))
        if n == 1:  # one long text: a plain Python loop is 20x faster than numpy on length-1 arrays
            rows, c, row = cum.tolist(), int(ctx[0]), out[0]
            syms = bytearray(max(length - k, 0))
            for t, ut in enumerate(u[0].tolist()):
                a = sum(ut > x for x in rows[c])
                syms[t] = a
                c = (c * m + a) % self.n_contexts
            row[k:] = np.frombuffer(bytes(syms), dtype=np.int8)
            return out[:, :length]
        for t in range(k, length):
            sym = (u[:, t - k, None] > cum[ctx]).sum(1)
            out[:, t] = sym
            ctx = (ctx * m + sym) % self.n_contexts
        return out[:, :length]

    def to_text(self, symbols: np.ndarray) -> list[str]:
        """Rows of symbols -> strings over ``self.alphabet``."""
        table = np.frombuffer(self.alphabet.encode(), dtype=np.uint8)
        return [table[row].tobytes().decode() for row in np.atleast_2d(symbols)]

    def sample_text(self, n: int, length: int, rng: np.random.Generator) -> list[str]:
        return self.to_text(self.sample(n, length, rng))

    def text(self, length: int, stream: int) -> str:
        """One long string from its own seeded stream (tokenizer training and count-based evaluation)."""
        return self.sample_text(1, length, self.rng(EVAL_STREAM + stream))[0]

    def log_likelihood(self, symbols: np.ndarray) -> np.ndarray | float:
        """log P(x_1..x_n) under the true source, in nats, per row (the first k symbols under the stationary law)."""
        x = np.atleast_2d(np.asarray(symbols, dtype=np.int64))
        k, m = self.k, self.m
        ctx = (x[:, :k] * m ** np.arange(k - 1, -1, -1)).sum(1)
        ll = np.log(self.stationary[ctx])
        for t in range(k, x.shape[1]):
            ll += np.log(self.transition[ctx, x[:, t]])
            ctx = (ctx * m + x[:, t]) % self.n_contexts
        return float(ll[0]) if np.ndim(symbols) == 1 else ll


def stationary_contexts(transition: np.ndarray, m: int) -> np.ndarray:
    """Stationary law of the chain on contexts c -> (c * m + a) mod m^k with probability transition[c, a]."""
    n = transition.shape[0]
    T = np.zeros((n, n))
    for a in range(m):
        T[np.arange(n), (np.arange(n) * m + a) % n] += transition[:, a]
    # pi (T - I) = 0 with sum(pi) = 1: replace one equation by the normalisation.
    A = (T - np.eye(n)).T
    A[-1, :] = 1.0
    b = np.zeros(n)
    b[-1] = 1.0
    pi = np.linalg.solve(A, b)
    pi = np.clip(pi, 0, None)
    return pi / pi.sum()
