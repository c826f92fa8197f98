"""The claim schema and rule helpers: each rule can fail, words and status come from one place."""

import json
import math

import pytest

from lmlab.claims import (Claim, Summary, aggregate, all_of, at_least, at_most, between, ci_excludes, greater,
                          not_comparable, within)


def test_rules_pass_and_fail():
    assert at_least(0.95, 0.9).ok and not at_least(0.85, 0.9).ok
    assert at_most(0.1, 0.2).ok and not at_most(0.3, 0.2).ok
    assert within(0.52, 0.5, 0.05).ok and not within(0.6, 0.5, 0.05).ok
    assert within(105, 100, 0.1, relative=True).ok and not within(115, 100, 0.1, relative=True).ok
    assert between(3, 1, 5).ok and not between(6, 1, 5).ok
    assert greater(2, 1).ok and not greater(1, 1).ok
    assert ci_excludes((0.1, 0.3), 0).ok and not ci_excludes((-0.1, 0.3), 0).ok
    assert ci_excludes((-0.3, -0.1), 0, side="below").ok and ci_excludes((-0.3, -0.1), 0, side="either").ok


@pytest.mark.parametrize("bad", [None, float("nan"), math.inf, "n/a"])
def test_missing_measurements_fail(bad):
    assert at_least(bad, 0).status == "fail"
    assert at_most(bad, 1e9).status == "fail" or bad == -math.inf


def test_words_match_the_rule():
    r = at_least(0.95, 0.9, what="test accuracy")
    c = Claim.judged("acc", "learns", paper_value=0.99, measured=0.95, rule=r)
    assert (c.status, c.tolerance) == ("pass", "test accuracy >= 0.9")
    both = all_of(r, at_most(0.2, 0.1, what="loss"))
    assert both.status == "fail" and both.tolerance == "test accuracy >= 0.9 and loss <= 0.1"
    assert all_of(r, not_comparable("needs a GPU")).status == "not_comparable"


def test_claim_validation():
    with pytest.raises(ValueError, match="status"):
        Claim("x", "y", 1, 1, "t", "passed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="holds_reason"):
        Claim("x", "y", 1, 1, "t", "pass", holds_without_training=True)


def test_summary_round_trip(tmp_path):
    claims = [Claim("a", "A", 1.0, 0.9, "r", "pass"), Claim("b", "B", 1.0, float("nan"), "r", "fail"),
              Claim("c", "C", 1.0, None, "r", "not_comparable", holds_without_training=True, holds_reason="data")]
    s = Summary("demo", claims, {"seed": 3}, 3, True, "demo/1", provenance={})
    s.write(tmp_path)
    d = json.loads((tmp_path / "summary.json").read_text())
    assert (d["n_pass"], d["n_fail"], d["n_not_comparable"], d["n_holds_without_training"]) == (1, 1, 1, 1)
    assert d["claims"][1]["measured"] is None and d["schema_version"] == 2
    back = Summary.read(tmp_path)
    assert [c.id for c in back.claims] == ["a", "b", "c"] and back.claims[2].holds_without_training
    d["schema_version"] = 99
    (tmp_path / "summary.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="upgrade"):
        Summary.read(tmp_path)


def test_aggregate_over_seeds():
    runs = [Summary("demo", [Claim("a", "A", 1.0, m, "r", st)], {}, seed, True, "v", provenance={})
            for seed, (m, st) in enumerate([(0.9, "pass"), (0.8, "pass"), (0.7, "fail"), (0.95, "pass"),
                                             (0.91, "pass")])]
    agg = aggregate(runs)["a"]
    assert agg["n_runs"] == 5 and agg["n_pass"] == 4 and agg["pass_rate"] == 0.8 and agg["holds"]
    lo, hi = agg["measured_ci95"]
    assert lo <= agg["measured_mean"] <= hi
    assert not aggregate(runs[1:3])["a"]["holds"]


def test_aggregate_gives_each_number_of_a_dict_measurement_a_mean():
    # a claim measured as a dict (e.g. P(target) per K) has no one mean: each numeric leaf gets mean, CI, min, max
    ms = [{"p": 0.2, "by_k": {"1": 0.5, "2": 0.1}, "label": "x"}, {"p": 0.4, "by_k": {"1": 0.7}},
          {"p": 0.3, "by_k": {"1": 0.6, "2": 0.3}}]
    runs = [Summary("demo", [Claim("a", "A", 1.0, m, "r", "pass")], {}, seed, True, "v", provenance={})
            for seed, m in enumerate(ms)]
    agg = aggregate(runs)["a"]
    assert agg["measured_mean"] is None
    leaves = agg["measured_leaves"]
    assert list(leaves) == ["p", "by_k.1"]  # by_k.2 is missing in one run; strings are not numbers
    assert leaves["p"]["mean"] == pytest.approx(0.3) and (leaves["p"]["min"], leaves["p"]["max"]) == (0.2, 0.4)
    lo, hi = leaves["by_k.1"]["ci95"]
    assert lo <= 0.6 <= hi
    assert aggregate(runs[:1])["a"]["measured_leaves"]["p"]["ci95"] is None  # one run: no interval
    scalar = [Summary("demo", [Claim("a", "A", 1.0, 0.5, "r", "pass")], {}, 0, True, "v", provenance={})]
    assert aggregate(scalar)["a"]["measured_leaves"] == {}
