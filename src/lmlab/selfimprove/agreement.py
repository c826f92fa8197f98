"""A judge's agreement with human preferences on the bundled HH-RLHF harmless-base pairs (the subsample that
``lmlab.rewardeval`` ships), through ``lmlab.rewardeval``'s reader and pairwise-accuracy metric.

The rubric judge scores both responses of a pair; margin = score_1 - score_2 (an unparsed judgment leaves the
pair tied, which counts half: ``rm_ties="half"``, a coin flip's expected credit).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmlab.selfimprove.judges import GenConfig, Group, RubricJudge


def hh_pairs(n: int, seed: int = 0, max_prompt_chars: int = 600) -> Any:
    """The first ``n`` bundled HH-RLHF pairs (prompts clipped to their last turns)."""
    from lmlab.rewardeval.data import BUNDLED_HH, clip_prompt, read_preference

    ds = read_preference(BUNDLED_HH, seed=seed)
    ds = ds.subset(list(range(min(n, len(ds)))))
    ds.prompt = [clip_prompt(p, max_prompt_chars) for p in ds.prompt]
    return ds


def judge_agreement(lm: Any, ds: Any, gen: GenConfig | None = None, seed: int = 0) -> dict[str, Any]:
    """Pairwise accuracy (with a bootstrap CI) of the rubric judge on preference pairs, and its parse rate."""
    from lmlab.rewardeval.metrics import bootstrap_mean_ci, pair_correctness

    judge = RubricJudge(lm, gen or GenConfig(n=1, temperature=0.0, max_new_tokens=96, seed=seed))
    groups = [Group(p.strip(), [a, b], id=q) for p, a, b, q in zip(ds.prompt, ds.response_1, ds.response_2, ds.question_id)]
    scores = judge.score_groups(groups)
    margin = np.array([np.nan_to_num(s[0] - s[1], nan=0.0) for s in scores])
    credit = pair_correctness(margin, ds.label, rm_ties="half")
    return {"hh_pairs": len(groups), "hh_accuracy": float(np.nanmean(credit)) if len(credit) else float("nan"),
            "hh_accuracy_ci": list(bootstrap_mean_ci(credit, seed=seed)), "hh_parse_rate": judge.stats.parse_rate,
            "hh_decided": int((margin != 0).sum())}
