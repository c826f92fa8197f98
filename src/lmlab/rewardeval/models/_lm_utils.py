"""What the LM-based reward models share: the log-odds of one answer token against another."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def answer_token_ids(lm: Any, words: Sequence[str]) -> list[int]:
    """First token id of each spelling of an answer word (with and without a leading space), deduplicated."""
    tok = lm.tokenizer
    ids: list[int] = []
    for w in words:
        enc = tok(w, add_special_tokens=False)["input_ids"] if callable(tok) else tok.encode(w)
        if enc and enc[0] not in ids:
            ids.append(int(enc[0]))
    return ids


def log_odds(lm: Any, prompts: Sequence[str], yes: Sequence[str], no: Sequence[str]) -> np.ndarray:
    """logsumexp of the next-token logits over ``yes`` spellings minus the same over ``no``: (n,).

    LMs without logits (HTTP endpoints) fall back to one greedy word: +1 for yes, -1 for no, 0 otherwise.
    """
    import torch

    if lm.has("logits"):
        logits = lm.next_token_logits(list(prompts)).float()
    else:
        outs = lm.generate(list(prompts), max_new_tokens=3, temperature=0.0)
        first = [o.strip().split()[0].strip(".,!:").lower() if o.strip() else "" for o in outs]
        ys, ns = {w.strip().lower() for w in yes}, {w.strip().lower() for w in no}
        return np.array([1.0 if f in ys else -1.0 if f in ns else 0.0 for f in first])
    y_ids, n_ids = answer_token_ids(lm, yes), answer_token_ids(lm, no)
    shared = set(y_ids) & set(n_ids)  # e.g. a lone space token for character tokenizers: it decides nothing
    y_ids, n_ids = [i for i in y_ids if i not in shared], [i for i in n_ids if i not in shared]
    if not y_ids or not n_ids:
        raise ValueError(f"the answer words {list(yes)} and {list(no)} have no distinct first tokens; choose other words")
    ly = torch.logsumexp(logits[:, y_ids], -1)
    ln = torch.logsumexp(logits[:, n_ids], -1)
    return (ly - ln).numpy().astype(float)
