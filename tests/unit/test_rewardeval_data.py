"""Readers for the PPE human-preference and best-of-K schemas: round trips and row-level validation."""

import gzip
import json

import numpy as np
import pytest

from lmlab.rewardeval.data import (BUNDLED_LICENSE, DataError, bok_row, clip_prompt, hh_to_preference, read_any,
                                   read_best_of_k, read_preference, split_hh, transcript_messages, write_rows)


def pref_row(i, winner="model_a", **kw):
    row = {"question_id": f"q{i}", "prompt": f"question {i}?", "response_1": "yes", "response_2": "no",
           "model_a": "m1", "model_b": "m2", "winner": winner, "language": "English", "conv_metadata": {}}
    row.update(kw)
    return row


def write_jsonl(path, rows, raw_lines=()):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        for line in raw_lines:
            f.write(line + "\n")
    return path


def test_preference_round_trip_jsonl(tmp_path):
    rows = [pref_row(0), pref_row(1, "model_b", language="German"), pref_row(2, "tie (bothbad)")]
    ds = read_preference(write_rows(rows, tmp_path / "p.jsonl.gz"))
    assert len(ds) == 3 and ds.label.tolist() == [1, -1, 0]
    assert ds.domain == ["English", "German", "English"] and ds.line == [1, 2, 3] and not ds.skipped


def test_parquet_round_trip(tmp_path):
    pytest.importorskip("pyarrow", reason="parquet needs pyarrow (the llm extra)")
    rows = [bok_row("q0", "1+1?", "m", ["2", "3", "2"], [True, False, True], domain="math")]
    path = write_rows(rows, tmp_path / "b.parquet")
    ds = read_any(path)
    assert ds.K == 3 and ds.labels.tolist() == [[True, False, True]] and ds.domain == ["math"]
    prefs = read_any(write_rows([pref_row(0), pref_row(1, "model_b")], tmp_path / "p.parquet"))
    assert prefs.label.tolist() == [1, -1]


@pytest.mark.parametrize("bad, message", [
    ('{"question_id": "q9", "prompt": ', "line 3: not valid JSON"),
    (json.dumps(pref_row(9, winner="model_c")), "line 3: field 'winner' is 'model_c'"),
    (json.dumps({k: v for k, v in pref_row(9).items() if k != "response_2"}), "line 3: field 'response_2' is missing"),
    (json.dumps(pref_row(9, prompt=7)), "line 3: field 'prompt' must be a string"),
    ('[1, 2]', "line 3: a row must be a JSON object"),
])
def test_a_malformed_preference_row_fails_with_its_line(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "p.jsonl", [pref_row(0), pref_row(1)], [bad, json.dumps(pref_row(3))])
    with pytest.raises(DataError, match=message) as e:
        read_preference(path)
    assert "on_bad_row=skip" in str(e.value) and str(path) in str(e.value)
    ds = read_preference(path, on_error="skip")
    assert ds.question_id == ["q0", "q1", "q3"] and ds.line == [1, 2, 4]
    assert [ln for ln, _ in ds.skipped] == [3] and message.split(": ", 1)[1] in ds.skipped[0][1]


@pytest.mark.parametrize("change, message", [
    ({"scores": [True, False]}, "'scores' has 2 entries but the row has 3 responses"),
    ({"scores": [True, "no", False]}, "'scores' must hold booleans"),
    ({"mean_score": 0.9}, "'mean_score' is 0.9 but the mean of 'scores' is 0.333333"),
    ({"response_5": "x"}, "not numbered 1..K without gaps"),
    ({"model_name": None}, "field 'model_name' is missing"),
])
def test_a_malformed_best_of_k_row_is_reported(tmp_path, change, message):
    good = bok_row("q0", "p", "m", ["a", "b", "c"], [True, False, False])
    bad = {**bok_row("q1", "p", "m", ["a", "b", "c"], [True, False, False]), **change}
    path = write_jsonl(tmp_path / "b.jsonl", [good, bad])
    with pytest.raises(DataError, match="line 2: .*" + message.replace("(", r"\(").replace(".", r"\.")):
        read_best_of_k(path)
    ds = read_best_of_k(path, on_error="skip")
    assert len(ds) == 1 and ds.skipped[0][0] == 2


def test_best_of_k_rows_must_share_k(tmp_path):
    rows = [bok_row("q0", "p", "m", ["a", "b"], [True, False]), bok_row("q1", "p", "m", ["a", "b", "c"], [1, 0, 0])]
    with pytest.raises(DataError, match="line 2: has 3 responses but the file's first valid row has 2"):
        read_best_of_k(write_jsonl(tmp_path / "b.jsonl", rows))


def test_files_without_valid_rows_and_wrong_schema(tmp_path):
    with pytest.raises(DataError, match="no valid rows"):
        read_preference(write_jsonl(tmp_path / "p.jsonl", [], ["{bad"]), on_error="skip")
    with pytest.raises(DataError, match="expected the best-of-K schema"):
        read_best_of_k(write_jsonl(tmp_path / "q.jsonl", [pref_row(0)]))
    with pytest.raises(DataError, match="does not exist"):
        read_any(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="unknown data format"):
        read_any(write_jsonl(tmp_path / "x.csv", [pref_row(0)]))


def test_hh_rows_become_preference_pairs():
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: Fine, thanks."
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: Go away."
    assert split_hh(chosen) == ("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:", "Fine, thanks.")
    flips = [hh_to_preference({"chosen": chosen, "rejected": rejected}, i) for i in range(40)]
    for r in flips:
        preferred = r["response_1"] if r["winner"] == "model_a" else r["response_2"]
        assert preferred == "Fine, thanks." and r["prompt"].endswith("Assistant:")
    n_first = sum(r["winner"] == "model_a" for r in flips)
    assert 8 < n_first < 32  # both orders occur: position is not the label
    assert transcript_messages(flips[0]["prompt"]) == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you?"}]


def test_bundled_hh_subsample_reads_cleanly():
    from lmlab.studies.reward_eval import BUNDLED_HH

    ds = read_preference(BUNDLED_HH)
    assert len(ds) == 256 and not ds.skipped and set(ds.label.tolist()) == {-1, 1}
    assert 0.35 < np.mean(ds.label == 1) < 0.65
    assert BUNDLED_LICENSE.exists() and "MIT License" in BUNDLED_LICENSE.read_text()
    with gzip.open(BUNDLED_HH, "rt") as f:
        assert set(json.loads(f.readline())) == {"chosen", "rejected"}  # the original rows, unmodified


def test_clip_prompt_keeps_the_last_turns():
    p = "\n\nHuman: " + "x" * 100 + "\n\nAssistant: ok\n\nHuman: last?\n\nAssistant:"
    assert clip_prompt(p, 0) == p and clip_prompt(p, 1000) == p
    assert clip_prompt(p, 40) == "\n\nHuman: last?\n\nAssistant:"
    assert clip_prompt("y" * 50, 10) == "..." + "y" * 10
