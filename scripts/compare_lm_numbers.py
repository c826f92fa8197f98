"""Compute LM-derived numbers with whichever lmlab is on PYTHONPATH, or compare two such outputs.

Used to show that the LM-interface refactor moved no number on the real SmolLM2 (the default model):

    PYTHONPATH=/path/to/old/src python scripts/compare_lm_numbers.py compute old.npz
    PYTHONPATH=src             python scripts/compare_lm_numbers.py compute new.npz
    python scripts/compare_lm_numbers.py compare old.npz new.npz      # JSON: max |difference| per quantity

Quantities: MULI first-token logits of 48 bundled prompts (quick template, the shared-prefix path), the
llm-sinks measurements (sink share, value/output/residual norm ratios) on 8 windows of 96 tokens, the judge
reward's log-odds on 4 prompts, and the model fingerprint that saved detectors store.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def compute(out: str) -> None:
    import torch

    torch.set_num_threads(1)
    from lmlab.lm import load_lm
    from lmlab.moderation.data import read_any
    from lmlab.moderation.features import FirstTokenFeatures, PromptTemplate, model_fingerprint
    from lmlab.rewardeval.models import build_rm
    from lmlab.studies.llm_sinks import domain_windows, measure

    lm = load_lm("default", batch_size=8)
    texts = read_any(None).texts[:48]
    feats = FirstTokenFeatures(lm, PromptTemplate(max_tokens=64), cache_dir=None, batch_size=16)
    arrays = {"first_token_logits": feats.logits(texts)}
    windows = domain_windows("prose", lm.tokenizer, 8, 96, np.random.default_rng(0))
    for k, v in measure(lm, windows, 4).items():
        arrays[f"sinks_{k}"] = v.double().numpy()
    judge = build_rm("judge", lm=lm)
    arrays["judge_scores"] = np.asarray(judge.score_batch(["What is 2+3?"] * 4, ["5", "6", "five", "I don't know"]))
    arrays["fingerprint"] = np.array(model_fingerprint(lm))
    np.savez(out, **arrays)


def compare(a: str, b: str) -> None:
    x, y = np.load(a), np.load(b)
    res = {}
    for k in sorted(set(x.files) | set(y.files)):
        if k not in x.files or k not in y.files:
            res[k] = "missing in one"
        elif x[k].dtype.kind in "US":
            res[k] = "equal" if str(x[k]) == str(y[k]) else f"{x[k]} != {y[k]}"
        else:
            res[k] = {"shape": list(x[k].shape), "max_abs_diff": float(np.max(np.abs(x[k] - y[k]))) if x[k].size else 0.0}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    if sys.argv[1] == "compute":
        compute(sys.argv[2])
    else:
        compare(sys.argv[2], sys.argv[3])
