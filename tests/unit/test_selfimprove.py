"""lmlab.selfimprove's data machinery on synthetic inputs: parsing, length control, pair selection,
Bradley-Terry, position-bias-weighted Elo, variance selection, judges (with a scripted fake LM), bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau

from lmlab.config import ConfigError
from lmlab.selfimprove.judges import Group, JudgeError, Judge, build_judge
from lmlab.selfimprove.loop import Item, IterationConfig, parse_samples, select_pairs
from lmlab.selfimprove.prompts import (GENERIC_RESPONSE_START, GENERIC_THOUGHT_START, parse_score, parse_thought,
                                       parse_winner, thought_prompt)
from lmlab.selfimprove.scoring import (bradley_terry_scores, length_controlled, most_disputed, normalise,
                                       select_tier, select_tpo, weighted_elo)


class ScriptedLM:
    """A text-only fake LM: ``generate`` answers each prompt with ``reply(prompt)``."""

    name = "scripted"

    def __init__(self, reply):
        self.reply = reply

    def chat_prompt(self, text, system=None):
        return f"user: {text}\nassistant:"

    def generate(self, prompts, max_new_tokens=32, temperature=0.0, top_p=1.0, seed=None, stop=()):
        return [self.reply(p) for p in prompts]

    def has(self, *needs):
        return needs == ("text",)


# -- parsing -------------------------------------------------------------------------------------------------
def test_thought_prompts_and_parsing():
    assert "Here is my response:" in thought_prompt("Add 2 and 3.", "generic")
    assert "<R>" in thought_prompt("Add 2 and 3.", "specific")
    assert thought_prompt("x", "none") == "x"
    assert parse_thought(f"{GENERIC_THOUGHT_START} two plus three. {GENERIC_RESPONSE_START} 5", "generic") == \
        ("two plus three.", "5")
    assert parse_thought("draft: 5. looks right. <R> The answer is 5.", "specific") == ("draft: 5. looks right.", "The answer is 5.")
    assert parse_thought("I think it is 5", "generic") is None          # no delimiter
    assert parse_thought(f"thoughts {GENERIC_RESPONSE_START}   ", "generic") is None  # empty response
    assert parse_thought("", "none") is None and parse_thought(" 5 ", "none") == ("", "5")
    assert parse_score("Justification... Score: 3") == 3.0 and parse_score("Score: 9") is None
    assert parse_score("") is None and parse_score(None) is None
    assert parse_winner("Winner: Judgment A") == 1 and parse_winner("Winner: [Judgment B]") == -1
    assert parse_winner("Winner: B") == -1 and parse_winner("both are fine") is None


# judgments SmolLM2-135M-Instruct wrote as self-judge (taken verbatim from a run's scores.jsonl)
REAL_JUDGMENTS = {
    # a score stated in prose, in the rubric's range: kept by the lenient parser only
    "The score given is: 1. This is not possible since the user specified that the answer will evaluate the specific "
    "criteria used in the response.": 1.0,
    " the answer to the question. There are no apples left.\n\nThe score for this question is 5 points.\n\nAdd a 1 "
    "point to the score for the answer to the question, giving an 1": 5.0,
    # stated scores outside the rubric's 0-5: dropped by both, as the paper drops unparsable judgments
    "Mia has 1 + 9 = 11 apples.\nMia has 11 apples now.\nThe score is 11, which is the maximum possible given the "
    "given criteria.": None,
    "The score for the answer to the user's question is 100, which confirms the total score of the user's question. "
    "I used the option of ranking the score from 1-5 (2-5 being ": None,
    # scores mentioned in passing, not stated as the judgment's score: no number is taken
    "Satisfactory - S\nAdding a score of 1 to the overall number of points, which is 100, \nreflecting the 4 books": None,
    "The score provided by Lily is 2. Lily's response has 1 point for being fully relevant and providing some "
    "information": None,
    "Leo: 2 apples (38)\nAdditive scoring: 15 points + 38 = 53 points\n\nAdditive scoring: 7 points\n": None,
    # the common case: no score at all
    "Mia has 1 + 9 = 11 apples.\nThe score is up to 100 points.\nThe answer is 11.\n\nMia has 11 apples today.\n"
    "The response is \"Mia has 11 apples now.\"": None,
}


def test_score_parser_on_real_judgment_shapes():
    for text, want in REAL_JUDGMENTS.items():
        assert parse_score(text) is None, text  # none of them has an in-range "Score: N"
        assert parse_score(text, lenient=True) == want, text
    # labelled forms the lenient parser accepts; the strict one takes only "Score: N" (also bold)
    for text, want in [("Score = 4/5", 4.0), ("I would give it 4 out of 5.", 4.0), ("Score: <3>", 3.0),
                       ("Score - 5", 5.0), ("a total score of 2", 2.0), ("The final score was 3.", 3.0),
                       ("The total score is: 2.5", 2.5)]:
        assert parse_score(text) is None and parse_score(text, lenient=True) == want, text
    for text in ("Justification. Score: 4", "**Score:** 2", "score: 3/5"):
        assert parse_score(text) == parse_score(text, lenient=True) is not None
    # the last statement decides; a strict "Score: N" wins over prose
    assert parse_score("The score is 2 ... the final score is 4", lenient=True) == 4.0
    assert parse_score("The score is 2. Score: 3", lenient=True) == 3.0
    assert parse_score("score of 1 + 9 = 10", lenient=True) is None


def test_rubric_judge_parser_setting():
    judge = build_judge("rubric", ScriptedLM(lambda p: "Fine. The score is 4."), None)
    assert np.isnan(judge.score_groups([Group("q", ["a"])])[0][0]) and judge.stats.parse_rate == 0.0
    from lmlab.selfimprove.judges import GenConfig, RubricJudge

    lenient = RubricJudge(ScriptedLM(lambda p: "Fine. The score is 4."), GenConfig(parser="lenient"))
    assert lenient.score_groups([Group("q", ["a"])])[0][0] == 4.0 and lenient.stats.parse_rate == 1.0
    with pytest.raises(ConfigError, match="parser"):
        RubricJudge(ScriptedLM(lambda p: ""), GenConfig(parser="loose"))
    with pytest.raises(ConfigError, match="judge_parser"):
        IterationConfig(judge_parser="loose").validate()


def test_malformed_thoughts_dropped_and_counted():
    good = f"{GENERIC_THOUGHT_START} think {GENERIC_RESPONSE_START} 7"
    parsed, counts = parse_samples({"a": [good, "no delimiter 7", "", good]}, "generic")
    assert counts == {"samples": 4, "malformed": 2}
    assert [k for k, _, _ in parsed["a"]] == [0, 3]


def test_chosen_and_rejected_keep_their_thoughts():
    lm = ScriptedLM(lambda p: "")
    samples = {"q": [f"{GENERIC_THOUGHT_START} 3 plus 4 is 7 {GENERIC_RESPONSE_START} The answer is 7.",
                     f"{GENERIC_THOUGHT_START} 3 plus 4 is 8 {GENERIC_RESPONSE_START} The answer is 8.",
                     "malformed"]}
    cfg = IterationConfig(K=3, thought="generic")
    parsed, _ = parse_samples(samples, "generic")
    scored = {"q": {"index": [0, 1], "scores": [1.0, 0.0]}}
    pairs, stats = select_pairs(lm, [Item("q", "What is 3 + 4?", 7)], samples, scored, parsed, cfg)
    assert stats["pairs"] == 1
    p = pairs[0]
    assert p["chosen"] == samples["q"][0] and p["rejected"] == samples["q"][1]
    assert "3 plus 4 is 7" in p["chosen"] and "3 plus 4 is 8" in p["rejected"]  # the thoughts are kept
    assert p["chosen_response"] == "The answer is 7." and "Here is my response" in p["prompt"]


# -- length control and selection ----------------------------------------------------------------------------
def test_rho_zero_gives_normalised_score():
    rng = np.random.default_rng(0)
    s, n = rng.normal(size=8), rng.integers(10, 500, 8)
    np.testing.assert_allclose(length_controlled(s, n, 0.0), (s - s.mean()) / s.std())
    np.testing.assert_allclose(normalise([2, 2, 2]), 0.0)
    assert select_tpo([1, 1, 1, 1], [5, 6, 7, 8], 0.3) is None  # no preference when every score ties


def _synthetic(seed: int, K: int = 8):
    """Scores correlated with length (longer answers score a little higher), as in the papers' setting."""
    rng = np.random.default_rng(seed)
    length = rng.integers(50, 1000, K).astype(float)
    score = length / 1000 + rng.normal(0, 0.3, K)
    return score, length


def test_larger_rho_picks_shorter_chosen():
    chosen_len = {}
    for rho in (0.0, 0.25, 0.5):
        ls = []
        for seed in range(300):
            s, n = _synthetic(seed)
            c, r = select_tpo(s, n, rho)
            ls.append(n[c])
        chosen_len[rho] = float(np.mean(ls))
    assert chosen_len[0.5] < chosen_len[0.25] < chosen_len[0.0]


def test_tier_selection_shortens_chosen_and_keeps_the_gap():
    lens, gaps = {}, {}
    for rho in (0.0, 0.32, 0.4):
        ls, gs = [], []
        for seed in range(300):
            s, n = _synthetic(seed)
            s = np.round(s * 4) / 4  # judge scores are coarse (averaged 5-point judgments)
            pick = select_tier(s, n, rho)
            if pick is None:
                continue
            ls.append(n[pick[0]])
            gs.append(s[pick[0]] - s[pick[1]])
        lens[rho], gaps[rho] = float(np.mean(ls)), float(np.min(gs))
    assert lens[0.32] < lens[0.0] and lens[0.4] < lens[0.0]
    assert gaps[0.32] > 0 and gaps[0.4] > 0
    assert select_tier([1.0, 1.0], [3, 4], 0.0) is None


def test_variance_selection_picks_most_disputed():
    assert most_disputed([[3, 3, 3], [1, 5, np.nan], [2, 3, 4]]) == 1
    assert most_disputed([[3, np.nan, np.nan], [4, 4, 4]]) is None


# -- pairwise aggregation --------------------------------------------------------------------------------------
def test_bradley_terry_recovers_planted_ranking():
    rng = np.random.default_rng(0)
    true = np.array([0.0, 1.5, -1.0, 3.0, 0.7, -2.0])
    first, second, out = [], [], []
    for _ in range(30):
        for i in range(6):
            for j in range(6):
                if i != j:
                    first.append(i), second.append(j)
                    out.append(float(rng.random() < 1 / (1 + np.exp(-(true[i] - true[j])))))
    beta = bradley_terry_scores(6, first, second, out)
    assert list(np.argsort(beta)) == list(np.argsort(true))


def _battles(seed: int, n: int = 6, bias: float = 0.6, missing: float = 0.3):
    """Meta-judge verdicts with a planted position bias: with probability ``bias`` the judge picks the first
    position whatever it reads; otherwise it prefers the better judgment by a logistic model. ``missing``
    verdicts are unparsed and dropped (so positions are not balanced)."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0, 2, n)
    out = []
    for m in range(n):
        for k in range(n):
            if m == k or rng.random() < missing:
                continue
            if rng.random() < bias:
                out.append((m, k, 1))
            else:
                out.append((m, k, 1 if rng.random() < 1 / (1 + np.exp(-(true[m] - true[k]))) else -1))
    return out, true


def test_weighted_elo_beats_unweighted_under_position_bias():
    tw, tu = [], []
    for seed in range(300):
        b, true = _battles(seed)
        tw.append(np.nan_to_num(kendalltau(weighted_elo(b, 6, weighted=True), true)[0]))
        tu.append(np.nan_to_num(kendalltau(weighted_elo(b, 6, weighted=False), true)[0]))
    tw, tu = np.array(tw), np.array(tu)
    assert tw.mean() > tu.mean()
    assert (tw > tu).mean() > (tw < tu).mean()


# -- judges ----------------------------------------------------------------------------------------------------
def test_verifiable_and_reward_model_judges():
    g = Group("What is 3 + 4?", ["It is 7.", "The answer is 8.", "seven"], answer=7)
    np.testing.assert_array_equal(build_judge("verifiable").score_groups([g])[0], [1, 0, 0])
    np.testing.assert_array_equal(build_judge("rm:length").score_groups([g])[0], [8, 16, 5])
    with pytest.raises(JudgeError, match="exact answers"):
        build_judge("verifiable").score_groups([Group("hi", ["x"])])


def test_rubric_judge_parse_rate():
    replies = iter(["Relevant and correct. Score: 4", "I cannot say.", "Score: 2", "Score: 7"] * 3)
    j = build_judge("rubric", ScriptedLM(lambda p: next(replies)))
    s = j.score_groups([Group("q", ["a", "b", "c", "d"])])[0]
    assert s[0] == 4 and np.isnan(s[1]) and s[2] == 2 and np.isnan(s[3])  # 7 is out of the 0-5 range
    assert j.stats.parse_rate == 0.5
    assert len(j.last_judgments[0]) == 4


def test_pairwise_judge_both_orders_to_bradley_terry():
    def reply(p):  # prefers the longer response, whatever its position
        a = p.split("<response A>")[1].split("</response A>")[0]
        b = p.split("<response B>")[1].split("</response B>")[0]
        return "Winner: A" if len(a) > len(b) else "Winner: B"

    j = build_judge("pairwise", ScriptedLM(reply))
    s = j.score_groups([Group("q", ["xx", "xxxx", "x", "xxx"])])[0]
    assert list(np.argsort(s)) == [2, 0, 3, 1]
    assert j.stats.judged == 12 and j.stats.parse_rate == 1.0


class _Garbage(Judge):
    name = "garbage"

    def __init__(self, out):
        super().__init__()
        self.out = out

    def _score(self, groups):
        return self.out


@pytest.mark.parametrize("out, words", [
    ([["high", "low"]], "non-numeric"), ([[1.0]], "1 scores for 2 responses"), ("nonsense", "one score array"),
    ([[np.inf, 1.0]], "infinite")])
def test_garbage_judge_gives_one_line_error(out, words):
    with pytest.raises(JudgeError, match=words) as e:
        _Garbage(out).score_groups([Group("q", ["a", "b"], id="p1")])
    assert "\n" not in str(e.value)


def test_unknown_judge_and_bad_config_are_one_line():
    from lmlab.config import ConfigError

    with pytest.raises(ConfigError, match="judge 'oracle'"):
        build_judge("oracle")
    with pytest.raises(ConfigError, match="iteration.K"):
        IterationConfig(K=1)
    with pytest.raises(ConfigError, match="iteration.thought"):
        IterationConfig(thought="deep")


@pytest.mark.parametrize("name", ["lmlab.selfimprove.prompts", "lmlab.selfimprove.scoring"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_move_aside_twice_in_one_second_does_not_collide(tmp_path, monkeypatch):
    from lmlab.selfimprove import arms

    monkeypatch.setattr(arms.time, "strftime", lambda fmt: "20261202T102254")
    names = []
    for i in range(3):
        d = tmp_path / "thought-generic"
        d.mkdir()
        (d / "f").write_text(str(i))
        names.append(arms.move_aside(d).name)
    assert names == ["thought-generic.stale-20261202T102254", "thought-generic.stale-20261202T102254-1",
                     "thought-generic.stale-20261202T102254-2"]
