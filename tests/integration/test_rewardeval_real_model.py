"""Reward signals through the real SmolLM2 from the wheel (`make test-model`; skipped in `make test`)."""

import numpy as np
import pytest

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_smollm2_judges_and_implicit_reward_on_a_correctness_question():
    from lmlab.lm import load_lm
    from lmlab.rewardeval.builder import check, make_problem
    from lmlab.rewardeval.models import build_rm

    lm = load_lm("default")
    p = make_problem("arithmetic", 1, 0)
    responses = [f"The answer is {p.answer}.", f"The answer is {p.answer + 7}.", ""]
    assert [check(p, r) for r in responses] == [True, False, False]
    for spec in ("judge", "judge-pairwise", "implicit"):
        s = build_rm(spec, lm=lm).score_batch([p.prompt] * 3, responses)
        assert np.isfinite(s).all() and len(set(np.round(s, 5))) == 3, spec
    # the judge's two answer words are distinct single tokens for SmolLM2's tokenizer
    from lmlab.rewardeval.models._lm_utils import answer_token_ids

    assert not set(answer_token_ids(lm, ("Yes", " Yes", "yes"))) & set(answer_token_ids(lm, ("No", " No", "no")))
