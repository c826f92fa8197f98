"""The verifiable-correctness set builder: problems with exact answers, the checker, best-of-K rows, resume."""

import json
import re

import pytest

from lmlab.lm.dummy import DummyLM
from lmlab.rewardeval.builder import (LEVELS, build_correctness_set, check, extract_answer, make_problem,
                                      make_problems)
from lmlab.rewardeval.data import read_best_of_k


def _solve(p):
    """An independent solver that reads the numbers back out of the problem text."""
    nums = [int(x) for x in re.findall(r"\d+", p.prompt)]
    if p.domain == "compare":
        return max(nums) if "larger" in p.prompt else min(nums)
    if p.difficulty in (1, 2):
        return nums[0] + nums[1] if "more" in p.prompt else nums[0] - nums[1]
    return nums[0] + nums[1] - nums[2]


def test_problems_are_deterministic_and_their_answers_right():
    problems = make_problems(per_level=6, seed=3)
    assert len(problems) == 6 * sum(len(v) for v in LEVELS.values())
    assert problems == make_problems(per_level=6, seed=3) and problems != make_problems(per_level=6, seed=4)
    assert len({p.question_id for p in problems}) == len(problems)
    for p in problems:
        assert p.answer == _solve(p), p.prompt
    with pytest.raises(ValueError, match="difficulty levels"):
        make_problem("compare", 3, 0)


def test_extract_answer_and_check():
    assert extract_answer("3 + 4 = 7, so the answer is 7.") == 7
    assert extract_answer("The answer is: **1,250**") == 1250
    assert extract_answer("#### 12\nok 3") == 12
    assert extract_answer("first 5 then 9") == 9 and extract_answer("The answer is -3.") == -3
    assert extract_answer("no digits") is None
    p = make_problem("arithmetic", 2, 0)
    assert check(p, f"The answer is {p.answer}.") and not check(p, f"The answer is {p.answer + 1}.")
    assert not check(p, "I do not know.")


def test_build_writes_valid_best_of_k_rows_and_resumes_to_the_same(tmp_path):
    lm = DummyLM()
    problems = make_problems({"arithmetic": (1,), "compare": (1,)}, per_level=2)
    full = build_correctness_set(lm, problems, K=3, out_path=tmp_path / "a.jsonl", max_new_tokens=6, seed=1)
    ds = read_best_of_k(tmp_path / "a.jsonl")
    assert len(ds) == 4 and ds.K == 3 and ds.domain == ["arithmetic"] * 2 + ["compare"] * 2
    for row, p in zip(full, problems):
        assert row["scores"] == [check(p, r) for r in (row[f"response_{j}"] for j in (1, 2, 3))]
        assert row["answer"] == p.answer and row["model_name"] == "dummy"
    # interrupted after two problems, with a line cut short; resuming gives the same rows
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    (tmp_path / "b.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    resumed = build_correctness_set(lm, problems, K=3, out_path=tmp_path / "b.jsonl", max_new_tokens=6, seed=1)
    assert resumed == full
    assert [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()] == full
    # a smaller problem list keeps only its own rows in the file
    build_correctness_set(lm, problems[:1], K=3, out_path=tmp_path / "b.jsonl", max_new_tokens=6, seed=1)
    assert len(read_best_of_k(tmp_path / "b.jsonl")) == 1
