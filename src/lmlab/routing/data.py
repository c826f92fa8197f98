"""The correctness matrix: which model answers which question correctly (EmbedLLM, arXiv 2410.02223).

A :class:`CorrectnessMatrix` holds ``labels`` (models x questions, int8, 1 = correct, 0 = wrong,
-1 = not observed), the model names, the question ids, texts and benchmark (domain) labels, and
optional per-model attributes (for the zoo: the training task, size, budget), used by the probes.

Formats:

- ``save_matrix`` / ``load_matrix``: one ``.npz`` (labels) plus a ``.json`` sidecar (names, texts,
  benchmarks, attributes), written atomically.
- ``read_embedllm_csv``: the public EmbedLLM layout (``train.csv``, ``val.csv``, ``test.csv``), one row per
  (model, question) with the columns ``model_id, model_name, prompt_id, prompt, label``; an optional
  ``category`` (or ``benchmark``) column gives the benchmark. Duplicate (model, prompt) rows are merged by
  taking the maximum label, as the reference code does. ``model_order.csv`` (``model_id, model_name``) and
  ``question_order.csv`` (``prompt_id, prompt`` [, ``category``]) are read when given, to fix the order
  and to name models or questions that have no labelled row.

Every problem with a file names the file, the line and the column, and says what to fix
(:class:`RoutingDataError`, a :class:`~lmlab.config.ConfigError`, so the CLI prints one line).

>>> m = CorrectnessMatrix(np.array([[1, 0, 1], [0, 0, 1]], np.int8), ["a", "b"])
>>> m.n_models, m.n_questions, m.accuracy().tolist()
(2, 3, [0.6666666666666666, 0.3333333333333333])
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.config import ConfigError
from lmlab.io import atomic_path, atomic_write_text

FORMAT = "lmlab-correctness/1"
MISSING = -1
CSV_COLUMNS = ("model_id", "model_name", "prompt_id", "prompt", "label")
BENCHMARK_COLUMNS = ("category", "benchmark")


class RoutingDataError(ConfigError):
    """A correctness matrix or one of its files is invalid; the message names the field and the fix."""


@dataclass
class CorrectnessMatrix:
    """Models x questions 0/1 labels (-1: not observed) with the names and labels around them."""

    labels: np.ndarray
    model_names: list[str]
    question_ids: list[str] | None = None
    question_text: list[str] | None = None
    benchmarks: list[str] | None = None
    model_attributes: dict[str, list[Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        if self.question_ids is None and self.labels.ndim == 2:
            self.question_ids = [str(i) for i in range(self.labels.shape[1])]
        self.validate()
        self.labels = self.labels.astype(np.int8, copy=False)

    # -- checks ---------------------------------------------------------------------------------
    def validate(self) -> None:
        y = self.labels
        if y.ndim != 2:
            raise RoutingDataError(f"CorrectnessMatrix.labels must be 2-D (models x questions), got shape {y.shape}")
        if y.dtype.kind not in "iub":
            if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
                pass
            else:
                raise RoutingDataError(f"CorrectnessMatrix.labels must hold integers 0/1 (-1 = missing), got dtype {y.dtype}")
        bad = ~np.isin(y, (0, 1, MISSING))
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise RoutingDataError(f"CorrectnessMatrix.labels[{i}, {j}] = {y[i, j].item()!r}: labels must be 0, 1 or -1 "
                                   f"(missing); {int(bad.sum())} bad entries")
        M, Q = y.shape
        if len(self.model_names) != M:
            raise RoutingDataError(f"CorrectnessMatrix.model_names has {len(self.model_names)} names for {M} rows of labels")
        if len(set(self.model_names)) != M:
            dup = next(n for n in self.model_names if self.model_names.count(n) > 1)
            raise RoutingDataError(f"CorrectnessMatrix.model_names: '{dup}' appears twice; model names must be unique")
        for name in ("question_ids", "question_text", "benchmarks"):
            v = getattr(self, name)
            if v is not None and len(v) != Q:
                raise RoutingDataError(f"CorrectnessMatrix.{name} has {len(v)} entries for {Q} questions (columns)")
        if self.question_ids is not None and len(set(self.question_ids)) != Q:
            raise RoutingDataError("CorrectnessMatrix.question_ids must be unique")
        for k, v in self.model_attributes.items():
            if len(v) != M:
                raise RoutingDataError(f"CorrectnessMatrix.model_attributes['{k}'] has {len(v)} entries for {M} models")

    # -- views ----------------------------------------------------------------------------------
    @property
    def n_models(self) -> int:
        return self.labels.shape[0]

    @property
    def n_questions(self) -> int:
        return self.labels.shape[1]

    @property
    def observed(self) -> np.ndarray:
        return self.labels != MISSING

    def accuracy(self, questions: np.ndarray | None = None) -> np.ndarray:
        """Per-model accuracy over the observed entries of ``questions`` (all by default)."""
        y = self.labels if questions is None else self.labels[:, questions]
        obs = y != MISSING
        return np.where(obs, y, 0).sum(1) / np.maximum(obs.sum(1), 1)

    def benchmark_names(self) -> list[str]:
        return sorted(set(self.benchmarks)) if self.benchmarks is not None else []

    def benchmark_index(self, name: str) -> np.ndarray:
        if self.benchmarks is None:
            raise RoutingDataError("this matrix has no benchmark labels")
        return np.array([i for i, b in enumerate(self.benchmarks) if b == name], dtype=np.int64)

    def select(self, models: np.ndarray | None = None, questions: np.ndarray | None = None) -> CorrectnessMatrix:
        mi = np.arange(self.n_models) if models is None else np.asarray(models)
        qi = np.arange(self.n_questions) if questions is None else np.asarray(questions)

        def pick(v: list | None, idx: np.ndarray) -> list | None:
            return None if v is None else [v[i] for i in idx]

        return CorrectnessMatrix(self.labels[np.ix_(mi, qi)], pick(self.model_names, mi), pick(self.question_ids, qi),
                                 pick(self.question_text, qi), pick(self.benchmarks, qi),
                                 {k: pick(v, mi) for k, v in self.model_attributes.items()}, dict(self.meta))


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------
def split_questions(n_questions: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 42,
                    strata: Sequence[str] | None = None) -> tuple[np.ndarray, ...]:
    """A random split of the question indices (the paper's 80/10/10 train/val/test by question).

    With ``strata`` (e.g. the benchmarks), each stratum is split in the same proportions.
    """
    if abs(sum(fractions) - 1) > 1e-6 or any(f < 0 for f in fractions):
        raise RoutingDataError(f"split fractions must be >= 0 and sum to 1, got {tuple(fractions)}")
    rng = np.random.default_rng(seed)
    groups = [np.arange(n_questions)] if strata is None else [
        np.array([i for i, s in enumerate(strata) if s == g]) for g in sorted(set(strata))]
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for g in groups:
        g = rng.permutation(g)
        cuts = np.round(np.cumsum(fractions)[:-1] * len(g)).astype(int)
        for k, piece in enumerate(np.split(g, cuts)):
            parts[k].append(piece)
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in parts)


# ----------------------------------------------------------------------------------------------
# lmlab's own format
# ----------------------------------------------------------------------------------------------
def save_matrix(m: CorrectnessMatrix, path: str | Path) -> Path:
    """Write ``path`` (.npz, labels) and ``path.json`` (everything else); both atomically."""
    path = Path(path).with_suffix(".npz")
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, labels=m.labels)
    side = {"format": FORMAT, "model_names": m.model_names, "question_ids": m.question_ids,
            "question_text": m.question_text, "benchmarks": m.benchmarks, "model_attributes": m.model_attributes,
            "meta": m.meta, "shape": list(m.labels.shape)}
    atomic_write_text(path.with_suffix(".json"), json.dumps(side))
    return path


def load_matrix(path: str | Path) -> CorrectnessMatrix:
    path = Path(path).with_suffix(".npz")
    side_path = path.with_suffix(".json")
    for p in (path, side_path):
        if not p.exists():
            raise RoutingDataError(f"correctness matrix file {p} does not exist (save_matrix writes .npz and .json)")
    try:
        side = json.loads(side_path.read_text())
    except json.JSONDecodeError as e:
        raise RoutingDataError(f"{side_path} is not valid JSON (line {e.lineno}); rebuild it with save_matrix") from None
    if side.get("format") != FORMAT:
        raise RoutingDataError(f"{side_path}: format {side.get('format')!r}, expected {FORMAT!r}")
    try:
        labels = np.load(path)["labels"]
    except (OSError, KeyError, ValueError) as e:
        raise RoutingDataError(f"{path}: cannot read the labels ({type(e).__name__}); rebuild it with save_matrix") from None
    if list(labels.shape) != side["shape"]:
        raise RoutingDataError(f"{path}: labels have shape {labels.shape} but {side_path} says {side['shape']}")
    try:
        return CorrectnessMatrix(labels, side["model_names"], side["question_ids"], side["question_text"],
                                 side["benchmarks"], side.get("model_attributes") or {}, side.get("meta") or {})
    except RoutingDataError as e:
        raise RoutingDataError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------------------------
# The EmbedLLM CSV layout
# ----------------------------------------------------------------------------------------------
def _rows(path: Path, required: Sequence[str]):
    """Yield (line number, row dict) of a CSV file after checking its header."""
    if not path.exists():
        raise RoutingDataError(f"CSV file {path} does not exist")
    f = path.open(newline="", encoding="utf-8")
    try:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise RoutingDataError(f"{path}: missing column(s) {', '.join(missing)}; the header is {', '.join(header) or '(empty)'} "
                                   f"and must include {', '.join(required)}")
        for row in reader:
            yield reader.line_num, row
    finally:
        f.close()


def _int(path: Path, line: int, col: str, value: str | None) -> int:
    try:
        return int(float(value)) if value is not None and value.strip() != "" and float(value).is_integer() else int("x")
    except (ValueError, TypeError):
        raise RoutingDataError(f"{path}, line {line}: column {col} = {value!r} is not an integer") from None


def _note_benchmark(bench: dict[int, str], q: int, row: dict[str, str]) -> None:
    """Record question q's benchmark from the first non-empty benchmark column of ``row`` (first seen wins)."""
    for col in BENCHMARK_COLUMNS:
        if row.get(col):
            bench.setdefault(q, row[col])
            break


def _apply_order(path: Path, id_col: str, text_col: str, texts: dict[int, str], ids: list[int], what: str,
                 on_row: Any = None) -> list[int]:
    """The ids in the order of an order file (``model_order.csv`` / ``question_order.csv``), filling ``texts``;
    refuses a text that contradicts the data files and data ids the order file does not list."""
    ordered = []
    for line, row in _rows(path, (id_col, text_col)):
        i = _int(path, line, id_col, row[id_col])
        if i in texts and texts[i] != row[text_col]:
            raise RoutingDataError(f"{path}, line {line}: {id_col} {i} is {row[text_col][:80]!r} here but "
                                   f"{texts[i][:80]!r} in the data files")
        texts[i] = row[text_col]
        if on_row is not None:
            on_row(i, row)
        ordered.append(i)
    unknown = sorted(set(ids) - set(ordered))
    if unknown:
        raise RoutingDataError(f"{path}: {id_col} {unknown[0]} (in the data files) is not listed; "
                               f"list every {what} or leave {what}_order out")
    return ordered


def read_embedllm_csv(paths: str | Path | Sequence[str | Path], model_order: str | Path | None = None,
                      question_order: str | Path | None = None) -> CorrectnessMatrix:
    """Read one or more EmbedLLM CSV files (e.g. train, val and test) into one matrix.

    Rows are indexed by ``model_id`` and columns by ``prompt_id``; a (model, prompt) pair with no row is
    -1 (missing). The ``split`` of each question (the file stem it came from) is kept in ``meta['split']``.
    """
    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not files:
        raise RoutingDataError("read_embedllm_csv: give at least one CSV file")
    model_name: dict[int, str] = {}
    prompt: dict[int, str] = {}
    bench: dict[int, str] = {}
    split: dict[int, str] = {}
    entries: dict[tuple[int, int], int] = {}
    for path in files:
        for line, row in _rows(path, CSV_COLUMNS):
            m = _int(path, line, "model_id", row["model_id"])
            q = _int(path, line, "prompt_id", row["prompt_id"])
            y = _int(path, line, "label", row["label"])
            if y not in (0, 1):
                raise RoutingDataError(f"{path}, line {line}: label = {row['label']!r}; labels must be 0 or 1")
            if m < 0 or q < 0:
                raise RoutingDataError(f"{path}, line {line}: model_id and prompt_id must be >= 0")
            name = row["model_name"]
            if model_name.setdefault(m, name) != name:
                raise RoutingDataError(f"{path}, line {line}: model_id {m} is named {name!r} here but "
                                       f"{model_name[m]!r} earlier; one id must have one name")
            text = row["prompt"]
            if prompt.setdefault(q, text) != text:
                raise RoutingDataError(f"{path}, line {line}: prompt_id {q} has a different prompt text than earlier")
            _note_benchmark(bench, q, row)
            if split.setdefault(q, path.stem) != path.stem:
                raise RoutingDataError(f"{path}, line {line}: prompt_id {q} is also in {split[q]}.csv; "
                                       "the splits must not share questions")
            key = (m, q)
            entries[key] = max(entries.get(key, 0), y)  # duplicates: the maximum label, as the reference code does

    model_ids = sorted(model_name)
    if model_order is not None:
        model_ids = _apply_order(Path(model_order), "model_id", "model_name", model_name, model_ids, "model")
    prompt_ids = sorted(prompt)
    if question_order is not None:
        prompt_ids = _apply_order(Path(question_order), "prompt_id", "prompt", prompt, prompt_ids, "question",
                                  on_row=lambda q, row: _note_benchmark(bench, q, row))
    if not model_ids or not prompt_ids:
        raise RoutingDataError(f"{files[0]}: no data rows")
    mrow = {m: i for i, m in enumerate(model_ids)}
    qcol = {q: j for j, q in enumerate(prompt_ids)}
    labels = np.full((len(model_ids), len(prompt_ids)), MISSING, dtype=np.int8)
    for (m, q), y in entries.items():
        labels[mrow[m], qcol[q]] = y
    names = [model_name[m] for m in model_ids]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise RoutingDataError(f"{files[0]}: model_name {dup!r} belongs to two model_ids; names must be unique")
    benchmarks = [bench.get(q, "unknown") for q in prompt_ids] if bench else None
    return CorrectnessMatrix(labels, names, [str(q) for q in prompt_ids], [prompt[q] for q in prompt_ids], benchmarks,
                             {"model_id": model_ids},
                             {"source": [str(p) for p in files], "split": [split.get(q, "") for q in prompt_ids]})


def write_embedllm_csv(m: CorrectnessMatrix, path: str | Path, questions: np.ndarray | None = None) -> Path:
    """Write the observed entries of ``m`` (optionally only ``questions``) in the EmbedLLM CSV layout."""
    path = Path(path)
    qi = np.arange(m.n_questions) if questions is None else np.asarray(questions)
    ids = m.model_attributes.get("model_id", list(range(m.n_models)))
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*CSV_COLUMNS, "category"])
        for j in qi:
            text = m.question_text[j] if m.question_text else ""
            cat = m.benchmarks[j] if m.benchmarks else ""
            for i in range(m.n_models):
                if m.labels[i, j] != MISSING:
                    w.writerow([ids[i], m.model_names[i], m.question_ids[j], text, int(m.labels[i, j]), cat])
    return path
