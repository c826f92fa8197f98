import csv

import numpy as np
import pytest

from lmlab.config import ConfigError
from lmlab.routing.data import (MISSING, CorrectnessMatrix, RoutingDataError, load_matrix, read_embedllm_csv,
                                save_matrix, split_questions, write_embedllm_csv)


def write_csv(path, rows, header=("model_id", "model_name", "prompt_id", "prompt", "label")):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_matrix_validation_names_the_problem():
    with pytest.raises(RoutingDataError, match="2-D"):
        CorrectnessMatrix(np.zeros(3), ["a"])
    with pytest.raises(RoutingDataError, match=r"labels\[0, 1\] = 2"):
        CorrectnessMatrix(np.array([[0, 2]]), ["a"])
    with pytest.raises(RoutingDataError, match="2 names for 1 rows"):
        CorrectnessMatrix(np.zeros((1, 2)), ["a", "b"])
    with pytest.raises(RoutingDataError, match="'a' appears twice"):
        CorrectnessMatrix(np.zeros((2, 2)), ["a", "a"])
    with pytest.raises(RoutingDataError, match="benchmarks has 1 entries for 2 questions"):
        CorrectnessMatrix(np.zeros((1, 2)), ["a"], benchmarks=["x"])
    with pytest.raises(RoutingDataError, match="dtype"):
        CorrectnessMatrix(np.full((1, 2), 0.5), ["a"])
    assert issubclass(RoutingDataError, ConfigError)  # the CLI prints it as one line


def test_accuracy_ignores_missing_entries():
    m = CorrectnessMatrix(np.array([[1, MISSING, 0], [MISSING, MISSING, MISSING]]), ["a", "b"])
    assert m.accuracy().tolist() == [0.5, 0.0]
    sub = m.select(models=[0], questions=[0, 2])
    assert sub.labels.tolist() == [[1, 0]] and sub.model_names == ["a"]


def test_save_load_round_trip(tmp_path):
    m = CorrectnessMatrix(np.array([[1, 0], [MISSING, 1]]), ["a", "b"], ["q0", "q1"], ["what?", "why?"], ["x", "y"],
                          {"mix": ["t1", "t2"]}, {"k": 1})
    p = save_matrix(m, tmp_path / "mat")
    r = load_matrix(p)
    assert r.labels.tolist() == m.labels.tolist() and r.question_text == m.question_text
    assert r.model_attributes == {"mix": ["t1", "t2"]} and r.meta == {"k": 1} and r.benchmarks == ["x", "y"]
    with pytest.raises(RoutingDataError, match="does not exist"):
        load_matrix(tmp_path / "nope.npz")
    (tmp_path / "mat.json").write_text("{bad")
    with pytest.raises(RoutingDataError, match="not valid JSON"):
        load_matrix(p)


def test_read_embedllm_csv_merges_duplicates_and_marks_missing(tmp_path):
    train = write_csv(tmp_path / "train.csv", [
        (0, "llama", 0, "2+2?", 0), (0, "llama", 0, "2+2?", 1),  # duplicate: the max label wins
        (1, "mistral", 0, "2+2?", 0), (0, "llama", 2, "capital of France?", 1)])
    test = write_csv(tmp_path / "test.csv", [(1, "mistral", 5, "a, b \"quoted\"", 1)])
    m = read_embedllm_csv([train, test])
    assert m.model_names == ["llama", "mistral"] and m.question_ids == ["0", "2", "5"]
    assert m.labels.tolist() == [[1, 1, MISSING], [0, MISSING, 1]]
    assert m.question_text[2] == 'a, b "quoted"'
    assert m.meta["split"] == ["train", "train", "test"]


def test_read_embedllm_csv_orders_and_categories(tmp_path):
    data = write_csv(tmp_path / "val.csv", [(3, "b", 1, "q1", 1, "mmlu"), (7, "a", 0, "q0", 0, "gsm8k")],
                     header=("model_id", "model_name", "prompt_id", "prompt", "label", "category"))
    mo = write_csv(tmp_path / "model_order.csv", [(7, "a"), (3, "b"), (9, "c")], header=("model_id", "model_name"))
    qo = write_csv(tmp_path / "question_order.csv", [(1, "q1"), (0, "q0")], header=("prompt_id", "prompt"))
    m = read_embedllm_csv(data, model_order=mo, question_order=qo)
    assert m.model_names == ["a", "b", "c"] and m.question_ids == ["1", "0"]
    assert m.benchmarks == ["mmlu", "gsm8k"]
    assert m.labels.tolist() == [[MISSING, 0], [1, MISSING], [MISSING, MISSING]]


@pytest.mark.parametrize("rows,header,message", [
    ([(0, "a", 0, "q", 1)], ("model_id", "model_name", "prompt_id", "label"), "missing column.*prompt"),
    ([(0, "a", 0, "q", 2)], None, r"line 2: label = '2'"),
    ([("x", "a", 0, "q", 1)], None, "column model_id = 'x' is not an integer"),
    ([(0, "a", 0, "q", 1), (0, "b", 1, "q2", 1)], None, "model_id 0 is named 'b' here but 'a'"),
    ([(0, "a", 0, "q", 1), (1, "b", 0, "other", 1)], None, "prompt_id 0 has a different prompt"),
    ([(0, "a", 0, "q", "")], None, "column label = '' is not an integer"),
])
def test_read_embedllm_csv_errors(tmp_path, rows, header, message):
    p = write_csv(tmp_path / "train.csv", rows, header or ("model_id", "model_name", "prompt_id", "prompt", "label"))
    with pytest.raises(RoutingDataError, match=message):
        read_embedllm_csv(p)


def test_read_embedllm_csv_split_overlap_and_missing_file(tmp_path):
    a = write_csv(tmp_path / "train.csv", [(0, "a", 0, "q", 1)])
    b = write_csv(tmp_path / "test.csv", [(1, "b", 0, "q", 0)])
    with pytest.raises(RoutingDataError, match="also in train.csv"):
        read_embedllm_csv([a, b])
    with pytest.raises(RoutingDataError, match="does not exist"):
        read_embedllm_csv(tmp_path / "val.csv")
    mo = write_csv(tmp_path / "model_order.csv", [(5, "z")], header=("model_id", "model_name"))
    with pytest.raises(RoutingDataError, match="model_id 0 .* is not listed"):
        read_embedllm_csv(a, model_order=mo)


def test_csv_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (4, 6)).astype(np.int8)
    labels[1, 2] = MISSING
    m = CorrectnessMatrix(labels, [f"m{i}" for i in range(4)], [str(j) for j in range(6)],
                          [f"question {j}, with a comma" for j in range(6)], ["x", "y"] * 3)
    r = read_embedllm_csv(write_embedllm_csv(m, tmp_path / "all.csv"))
    assert r.labels.tolist() == labels.tolist() and r.benchmarks == m.benchmarks and r.question_text == m.question_text


def test_split_questions():
    tr, va, te = split_questions(1000, seed=1)
    assert (len(tr), len(va), len(te)) == (800, 100, 100)
    assert len(np.unique(np.concatenate([tr, va, te]))) == 1000
    strata = ["a"] * 100 + ["b"] * 900
    tr, va, te = split_questions(1000, strata=strata, seed=1)
    assert (te < 100).sum() == 10 and (tr < 100).sum() == 80
    assert split_questions(50, seed=3)[0].tolist() == split_questions(50, seed=3)[0].tolist()
    with pytest.raises(RoutingDataError, match="sum to 1"):
        split_questions(10, (0.5, 0.2, 0.2))
