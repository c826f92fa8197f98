"""Cross-entropy per character for token-level models: the count-based token unigram and the conversion of losses.

A model over tokens assigns a probability to a string ``x`` of ``m`` characters through its
tokenization ``enc(x) = t_1..t_j``; the paper's per-character cross-entropy is
``L_m(Q) = -(1/m) E[log Q(enc(x))]``, so a token-level loss is converted by dividing the *total*
token negative log-likelihood of a sequence by the number of characters the tokens decode to
(not by the number of tokens). The token unigram ``Q(t_1..t_j) = Q_#(j) prod_i Q_tok(t_i)`` is fit
by counting; like the spec we leave out the length term ``-log Q_#(j)``, which is O(log m).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lmlab.tokenizers.base import Tokenizer


def fit_token_unigram(tok: Tokenizer, text: str, smoothing: float = 0.5) -> np.ndarray:
    """Q_tok from the token counts of ``tok.encode(text)``, with additive smoothing (0.5: Krichevsky-Trofimov)."""
    counts = np.bincount(np.asarray(tok.encode(text), dtype=np.int64), minlength=tok.vocab_size).astype(np.float64)
    counts += smoothing
    return counts / counts.sum()


def unigram_nats_per_char(tok: Tokenizer, probs: np.ndarray, text: str) -> float:
    """-(1/m) sum_i log Q_tok(t_i) over the tokens of ``text`` (m characters), length term left out."""
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    return float(-np.log(probs[ids]).sum() / len(text))


def token_unigram_eval(tok: Tokenizer, train_text: str, test_text: str, smoothing: float = 0.5) -> dict[str, Any]:
    """Fit on ``train_text``, evaluate on ``test_text``: nats/char, and how long the tokens are."""
    probs = fit_token_unigram(tok, train_text, smoothing)
    ids = tok.encode(test_text)
    return {
        "nats_per_char": float(-np.log(probs[np.asarray(ids, dtype=np.int64)]).sum() / len(test_text)),
        "chars_per_token": len(test_text) / max(1, len(ids)),
        "vocab_size": tok.vocab_size,
        "tokens_used": int((np.bincount(ids, minlength=tok.vocab_size) > 0).sum()),
    }


def per_char_loss(token_nll: torch.Tensor, mask: torch.Tensor | None, n_chars: int | torch.Tensor) -> float:
    """Total token NLL (nats) where ``mask`` is true, divided by the characters those tokens decode to."""
    total = token_nll[mask].sum() if mask is not None else token_nll.sum()
    n = int(n_chars.sum()) if isinstance(n_chars, torch.Tensor) else int(n_chars)
    if n <= 0:
        raise ValueError("per_char_loss: the tokens cover no characters")
    return float(total) / n


def nats_to_bits(x: float) -> float:
    return x / math.log(2)
