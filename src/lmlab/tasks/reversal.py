"""Reversal-curse data: one-token entities and relation tokens (Zhu et al. 2024, arXiv 2405.04669).

Version ``reversal/2`` (``/1`` augmented every held-out pair, see ``augment_reversed``). Three variants, as in the paper's code (``marlo-z/reversal_curse_analysis``):

``reversal``
    Two disjoint alphabets A and B of ``alphabet_size`` tokens each, paired at random into
    ``alphabet_size`` facts. A fact is written ``[a, FWD, b]`` ("a -> b") or ``[b, BWD, a]``
    ("b <- a"). A ``split_ratio`` share of the pairs is trained in both directions; for every other
    pair one random direction is trained and the other is held out for validation. With the defaults
    (800 tokens, alphabets of 200, split 0.7) that is 340 training and 60 validation sentences.
``chain``
    Three alphabets X, Y, Z paired into triples; sentences ``[x, FWD, y]``, ``[y, FWD, z]`` and
    ``[x, BWD, z]`` (here the second relation token reads "leads to"). ``split_ratio`` of the
    triples are trained fully; for the rest ``x -> y`` and ``y -> z`` are trained and ``x ~> z`` is
    held out: 540 training and 60 validation sentences.
``in_context``
    The control: ``[x, FWD, y, BOTH, y, BWD, x]`` with ``n_x`` x-tokens and ``n_y`` y-tokens; each x
    appears with ``split_ratio`` of the y's in training and with the others in validation (700 / 300).
    The reverse fact is in the context, so a model can copy it.

The generator makes the same sequence of calls to NumPy's legacy ``RandomState`` as the reference
code, so seed 1234 (the paper's) draws the same alphabets, pairings and split.

``augment_reversed=True`` is the mitigation (reverse training): the trained sentence of the first
``augment_share`` of the held-out pairs is added in the other direction too, which puts that pair's
held-out sentence in the training set (``val_seen``), as reverse training does to natural text. The
other held-out pairs stay in ``val``: facts seen in one direction whose reversed form was never trained,
on which the mitigation is judged (does training on reversals teach the model to reverse other facts?).

>>> data = ReversalTask(ReversalTaskConfig()).data()
>>> data.train.shape, data.val.shape, data.d_vocab
((340, 3), (60, 3), 802)
>>> answer_alphabet(data, data.val).shape  # each held-out answer's 200 candidates
(60, 200)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from lmlab.config import Config, ConfigError
from lmlab.train.loop import Batch

VERSION = "reversal/2"
FWD, BWD, BOTH = 0, 1, 2  # relation tokens: "->", "<-" (or "leads to" in the chain variant), "<->"


@dataclass(frozen=True)
class ReversalTaskConfig(Config):
    variant: Literal["reversal", "chain", "in_context"] = "reversal"
    vocab_size: int = 800  # entity tokens; the relation tokens come on top
    alphabet_size: int = 200  # tokens per alphabet (the code uses vocab_size // 4)
    split_ratio: float = 0.7
    n_x: int = 100  # in_context only
    n_y: int = 10  # in_context only
    augment_reversed: bool = False  # reversal only: reverse training on a share of the held-out pairs
    augment_share: float = 0.5  # with augment_reversed: the share of held-out pairs trained in both directions

    def validate(self) -> None:
        if not 0 < self.split_ratio < 1:
            raise ConfigError(f"ReversalTaskConfig.split_ratio must be in (0, 1), got {self.split_ratio}")
        if self.alphabet_size < 2:
            raise ConfigError(f"ReversalTaskConfig.alphabet_size must be >= 2, got {self.alphabet_size}")
        need = {"reversal": 2 * self.alphabet_size, "chain": 3 * self.alphabet_size,
                "in_context": self.n_x + self.n_y}[self.variant]
        if need > self.vocab_size:
            raise ConfigError(
                f"ReversalTaskConfig.vocab_size ({self.vocab_size}) must be >= {need} for variant "
                f"'{self.variant}' (the alphabets are disjoint); raise vocab_size or lower alphabet_size"
            )
        if not 0 < self.augment_share < 1:
            raise ConfigError(f"ReversalTaskConfig.augment_share must be in (0, 1), got {self.augment_share}: some "
                              "held-out pairs must stay held out to judge the mitigation on")
        if self.augment_reversed and self.variant != "reversal":
            raise ConfigError("ReversalTaskConfig.augment_reversed applies only to variant 'reversal'")
        if self.variant == "in_context" and not 0 < self.n_train_y < self.n_y:
            raise ConfigError(f"ReversalTaskConfig: n_y * split_ratio ({self.n_y} x {self.split_ratio}) trains "
                              f"{self.n_train_y} of {self.n_y} y's; it must leave y's for both training and "
                              "validation: raise n_y or change split_ratio")

    @property
    def n_train_y(self) -> int:
        """In-context variant: the y's whose sentences are trained (floor of n_y * split_ratio; the rounding to
        9 decimals keeps 0.29 x 100 at 29, not 28.999...)."""
        return int(round(self.n_y * self.split_ratio, 9))


@dataclass
class ReversalData:
    """Sentences as int64 arrays (n, L); the answer is the last token of each sentence.

    ``candidates`` maps an alphabet name to its tokens (see :func:`answer_alphabet`). ``train_heldout`` marks the training sentences whose other direction (or
    whose chain conclusion) is in validation. For ``chain``, ``val_bridge`` holds the y of each
    held-out triple, for the chain-of-thought evaluation.
    """

    train: np.ndarray
    val: np.ndarray
    candidates: dict[str, np.ndarray]
    train_heldout: np.ndarray
    d_vocab: int
    val_bridge: np.ndarray | None = None
    #: ``augment_reversed``: held-out sentences whose reversed form was added to training (so they are trained)
    val_seen: np.ndarray | None = None

    @property
    def n_ctx(self) -> int:
        return self.train.shape[1] - 1


class ReversalTask:
    version = VERSION

    def __init__(self, cfg: ReversalTaskConfig, seed: int = 1234):
        self.cfg = cfg
        self.seed = seed

    def data(self) -> ReversalData:
        return {"reversal": self._reversal, "chain": self._chain, "in_context": self._in_context}[self.cfg.variant]()

    # -- generators (the reference code's order of RandomState calls) ------------------------------
    def _alphabets(self, rs: np.random.RandomState, n: int) -> list[np.ndarray]:
        c = self.cfg
        ids = rs.choice(c.vocab_size, (n, c.alphabet_size), replace=False) + 2  # skip FWD, BWD
        words = [np.array(list(itertools.product(a, repeat=1))) for a in ids]
        for w in words:
            rs.shuffle(w)
        # The reference then subsamples min(len, 2 * alphabet_size) words: with one-token words that
        # is a permutation, but it draws from the generator, so we make the same call.
        return [w[rs.choice(len(w), size=len(w), replace=False), 0] for w in words]

    def _split(self, rs: np.random.RandomState, n: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.arange(n)
        rs.shuffle(order)
        cut = round(n * self.cfg.split_ratio)
        return order[:cut], order[cut:]

    def _reversal(self) -> ReversalData:
        rs = np.random.RandomState(self.seed)
        a, b = self._alphabets(rs, 2)
        fwd = np.stack([a, np.full_like(a, FWD), b], 1)
        bwd = np.stack([b, np.full_like(b, BWD), a], 1)
        both, held = self._split(rs, len(a))
        train = [s for i in both for s in (fwd[i], bwd[i])]
        val, heldout = [], [False] * len(train)
        for i in held:
            if rs.randint(2):  # forward trained, backward held out
                train.append(fwd[i])
                val.append(bwd[i])
            else:
                train.append(bwd[i])
                val.append(fwd[i])
            heldout.append(True)
        seen = None
        if self.cfg.augment_reversed:
            n_aug = max(1, min(len(held) - 1, int(round(len(held) * self.cfg.augment_share))))
            train += [_reverse(s) for s in train[len(both) * 2: len(both) * 2 + n_aug]]
            heldout += [True] * n_aug
            seen, val = np.stack(val[:n_aug]), val[n_aug:]
        # Answers of "a -> b" come from B and of "b <- a" from A: see answer_alphabet().
        cands = {"A": np.sort(a), "B": np.sort(b)}
        return ReversalData(np.stack(train), np.stack(val), cands, np.array(heldout),
                            self.cfg.vocab_size + 2, val_seen=seen)

    def _chain(self) -> ReversalData:
        rs = np.random.RandomState(self.seed)
        x, y, z = self._alphabets(rs, 3)
        x0y = np.stack([x, np.full_like(x, FWD), y], 1)
        y0z = np.stack([y, np.full_like(y, FWD), z], 1)
        x1z = np.stack([x, np.full_like(x, BWD), z], 1)
        full, held = self._split(rs, len(x))
        train = [s for i in full for s in (x0y[i], y0z[i], x1z[i])] + [s for i in held for s in (x0y[i], y0z[i])]
        heldout = [False] * (3 * len(full)) + [True] * (2 * len(held))
        cands = {"X": np.sort(x), "Y": np.sort(y), "Z": np.sort(z)}
        return ReversalData(np.stack(train), x1z[held], cands, np.array(heldout), self.cfg.vocab_size + 2,
                            val_bridge=y[held])

    def _in_context(self) -> ReversalData:
        c = self.cfg
        rs = np.random.RandomState(self.seed)
        tokens = rs.choice(c.vocab_size, c.n_x + c.n_y, replace=False) + 3  # skip FWD, BWD, BOTH
        xs, ys = tokens[: c.n_x], tokens[c.n_x:]
        n_train = c.n_train_y
        train, val = [], []
        for x in xs:
            sentences = rs.permutation([[x, FWD, y, BOTH, y, BWD, x] for y in ys])
            train.extend(sentences[:n_train])
            val.extend(sentences[n_train:])
        return ReversalData(np.stack(train), np.stack(val), {"X": np.sort(xs), "Y": np.sort(ys)},
                            np.zeros(len(train), bool), c.vocab_size + 3)

    # -- batches ------------------------------------------------------------------------------------
    def epoch_batches(self, data: ReversalData, batch_size: int, whole_sequence: bool = False):
        """``batch_fn(step)``: shuffled epochs over ``data.train``, a pure function of (seed, step).

        The loss counts at the last token only (the paper's default) or, with ``whole_sequence``, at
        every token.
        """
        n = len(data.train)
        per_epoch = -(-n // batch_size)
        positions = None if whole_sequence else torch.tensor([data.n_ctx - 1])

        def batch(step: int) -> Batch:
            epoch, k = divmod(step, per_epoch)
            order = np.random.default_rng(np.random.SeedSequence([self.seed, epoch])).permutation(n)
            rows = torch.from_numpy(data.train[order[k * batch_size:(k + 1) * batch_size]])
            return Batch(rows[:, :-1], rows[:, 1:], None, positions)

        return batch


def _reverse(sentence: np.ndarray) -> np.ndarray:
    """``[a, FWD, b]`` <-> ``[b, BWD, a]``."""
    return np.array([sentence[2], BWD if sentence[1] == FWD else FWD, sentence[0]])


def answer_alphabet(data: ReversalData, sentences: np.ndarray) -> np.ndarray:
    """(n, C) candidate answers for each sentence: the alphabet its last token comes from.

    ("a -> b" answers from B, "b <- a" from A, "x ~> z" from Z.) All alphabets have the same size.
    """
    out = []
    for answer in sentences[:, -1]:
        alphabet = next((a for a in data.candidates.values() if answer in a), None)
        if alphabet is None:
            raise ValueError(f"answer token {answer} is in no alphabet of this data set")
        out.append(alphabet)
    return np.stack(out)
