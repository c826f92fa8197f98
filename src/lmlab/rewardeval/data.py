"""Readers and writers for the PPE data schemas, validated row by row (spec "Data").

Two schemas, JSONL (``.jsonl``, ``.jsonl.gz``) or parquet (``.parquet``, needs pyarrow: the ``llm``
extra installs it):

- **human preference** (PPE-Human-Preference-V1): ``question_id, prompt, response_1, response_2,
  model_a, model_b, winner`` (``model_a`` | ``model_b`` | ``tie`` | ``tie (bothbad)``), optional
  ``language``, ``conv_metadata`` and ``domain`` (the grouping for per-domain accuracy; falls back to
  ``language``, then ``"all"``). Anthropic HH-RLHF rows (``chosen``, ``rejected`` dialogues) are read
  as this schema too (:func:`hh_to_preference`).
- **best-of-K** (PPE ``*-Best-of-K``): ``question_id, prompt, model_name, response_1..response_K,
  scores`` (K booleans), ``mean_score``; optional ``domain``; other task-specific fields are kept.

Every row is checked. A malformed row is reported with its line number (JSONL; the row number for
parquet), and either stops the read (``on_error="fail"``, the default: :class:`DataError` naming
the file, line, field and fix) or is skipped and listed in ``.skipped`` (``on_error="skip"``);
callers print the skipped rows. Nothing is dropped silently.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.config import ConfigError
from lmlab.io import atomic_path
from lmlab.rewardeval.metrics import WINNER_LABELS

PREFERENCE_FIELDS = ("question_id", "prompt", "response_1", "response_2", "model_a", "model_b", "winner")
BOK_FIELDS = ("question_id", "prompt", "model_name", "scores", "mean_score")
ASSETS = Path(__file__).resolve().parent / "assets"
#: 256 unmodified rows of Anthropic HH-RLHF harmless-base test (MIT; see BUNDLED_LICENSE)
BUNDLED_HH = ASSETS / "hh-rlhf-harmless-base-test-sub256.jsonl.gz"
BUNDLED_LICENSE = ASSETS / "LICENSE-hh-rlhf"
SKIP_HINT = "fix the row, or skip malformed rows with on_error='skip' (CLI: --set on_bad_row=skip)"


class DataError(ConfigError):
    """A data file or one of its rows is invalid; the message names the file, the line and the field."""


class RowError(ValueError):
    """One row is invalid (the reader adds the file and line)."""


@dataclass
class PreferenceSet:
    """Human-preference pairs as parallel lists; ``label`` is +1 (response_1 preferred), -1, 0 (tie)."""

    question_id: list[str]
    prompt: list[str]
    response_1: list[str]
    response_2: list[str]
    model_a: list[str]
    model_b: list[str]
    label: np.ndarray
    domain: list[str]
    line: list[int]
    path: str = ""
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompt)

    def subset(self, idx: Sequence[int]) -> PreferenceSet:
        pick = (lambda xs: [xs[i] for i in idx])
        return PreferenceSet(pick(self.question_id), pick(self.prompt), pick(self.response_1), pick(self.response_2),
                             pick(self.model_a), pick(self.model_b), self.label[list(idx)], pick(self.domain),
                             pick(self.line), self.path, list(self.skipped))


@dataclass
class BestOfKSet:
    """Best-of-K rows: ``responses[i]`` has K strings, ``labels`` is (n, K) bool."""

    question_id: list[str]
    prompt: list[str]
    model_name: list[str]
    responses: list[list[str]]
    labels: np.ndarray
    domain: list[str]
    extra: list[dict[str, Any]]
    line: list[int]
    path: str = ""
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompt)

    @property
    def K(self) -> int:
        return int(self.labels.shape[1]) if self.labels.ndim == 2 else 0


# -- raw rows ------------------------------------------------------------------------------------------

def iter_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed row or a RowError) for each non-blank line of a JSONL file or row of a parquet."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {p} does not exist")
    name = p.name.lower()
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{p}: reading parquet needs pyarrow: pip install pyarrow (or -e '.[llm]'), "
                            "or convert the file to JSONL") from None
        try:
            table = pq.read_table(p)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise DataError(f"{p}: not a readable parquet file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
        for i, row in enumerate(table.to_pylist(), start=1):
            yield i, row
        return
    if not (name.endswith(".jsonl") or name.endswith(".jsonl.gz") or name.endswith(".json")):
        raise DataError(f"{p}: unknown data format; use .jsonl, .jsonl.gz or .parquet")
    opener = gzip.open if name.endswith(".gz") else open
    try:
        with opener(p, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as e:
                    yield i, RowError(f"not valid JSON ({e.msg} at column {e.colno})")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot be read as {'gzip ' if opener is gzip.open else ''}UTF-8 JSONL "
                        f"({type(e).__name__}: {e})") from None


def detect_schema(row: Any) -> str:
    """'preference', 'hh' (chosen/rejected dialogues) or 'best_of_k', from the fields of one row."""
    if not isinstance(row, dict):
        raise RowError(f"a row must be a JSON object, got {type(row).__name__}")
    if "scores" in row and "response_1" in row and "winner" not in row:
        return "best_of_k"
    if "winner" in row:
        return "preference"
    if "chosen" in row and "rejected" in row:
        return "hh"
    raise RowError("neither the human-preference schema (response_1, response_2, winner, ...), the best-of-K "
                   "schema (response_1..K, scores, ...) nor HH-RLHF (chosen, rejected)")


def _str(row: dict, key: str, allow_empty: bool = False) -> str:
    if key not in row or row[key] is None:
        raise RowError(f"field '{key}' is missing")
    v = row[key]
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and key == "question_id":
        return str(v)
    if not isinstance(v, str):
        raise RowError(f"field '{key}' must be a string, got {type(v).__name__}")
    if not allow_empty and not v.strip():
        raise RowError(f"field '{key}' is empty")
    return v


def _read(path: str | Path, parse: Any, on_error: str, want: str) -> tuple[list[Any], list[tuple[int, str]]]:
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    good: list[Any] = []
    skipped: list[tuple[int, str]] = []
    state: dict[str, Any] = {}
    unit = "row" if str(path).lower().endswith(".parquet") else "line"
    for line, row in iter_rows(path):
        try:
            if isinstance(row, RowError):
                raise row
            schema = detect_schema(row)
            if want == "preference" and schema not in ("preference", "hh"):
                raise RowError(f"is a {schema} row, expected the human-preference schema")
            if want == "best_of_k" and schema != "best_of_k":
                raise RowError(f"is a {schema} row, expected the best-of-K schema")
            good.append((line, parse(row, schema, state)))
        except RowError as e:
            if on_error == "fail":
                raise DataError(f"{path}, {unit} {line}: {e}; {SKIP_HINT}") from None
            skipped.append((line, str(e)))
    if not good:
        detail = f" ({len(skipped)} malformed, first: {unit} {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise DataError(f"{path}: no valid rows{detail}")
    return good, skipped


# -- human preference -----------------------------------------------------------------------------------

def split_hh(dialogue: str) -> tuple[str, str]:
    """An HH-RLHF dialogue -> (prompt up to and including the last ``\\n\\nAssistant:``, final reply)."""
    marker = "\n\nAssistant:"
    i = dialogue.rfind(marker)
    if i < 0:
        raise RowError("an HH dialogue has no '\\n\\nAssistant:' turn")
    return dialogue[: i + len(marker)], dialogue[i + len(marker):].strip()


def hh_to_preference(row: dict, index: int, seed: int = 0) -> dict[str, Any]:
    """One HH-RLHF row (``chosen``, ``rejected``) as a PPE human-preference row.

    The shared dialogue up to the last assistant turn becomes ``prompt`` and the two final replies the
    responses. Which of them is ``response_1`` is a seeded coin flip per row (otherwise the preferred
    answer would always come first and position bias would look like skill). HH has no model names:
    both sides are ``"hh-rlhf"``. Rows whose two dialogues differ before the last reply (5 of 2,312 in
    harmless-base test) keep the chosen dialogue's prompt and are marked in ``conv_metadata``.
    """
    chosen, rejected = _str(row, "chosen"), _str(row, "rejected")
    p_c, r_c = split_hh(chosen)
    p_r, r_r = split_hh(rejected)
    if not r_c or not r_r:
        raise RowError("an HH final reply is empty")
    flip = bool(np.random.default_rng([seed, index]).integers(2))
    return {
        "question_id": f"hh-{index}", "prompt": p_c,
        "response_1": r_r if flip else r_c, "response_2": r_c if flip else r_r,
        "model_a": "hh-rlhf", "model_b": "hh-rlhf", "winner": "model_b" if flip else "model_a",
        "language": "English", "domain": "harmless-base", "conv_metadata": {"prefix_mismatch": p_c != p_r},
    }


def _parse_preference(row: dict, schema: str, state: dict) -> dict[str, Any]:
    if schema == "hh":
        state["n"] = state.get("n", 0) + 1
        row = hh_to_preference(row, state["n"] - 1, state.get("seed", 0))
    out = {k: _str(row, k) for k in ("question_id", "prompt", "response_1", "response_2", "model_a", "model_b")}
    w = row.get("winner")
    if w not in WINNER_LABELS:
        raise RowError(f"field 'winner' is {w!r}; it must be one of {', '.join(WINNER_LABELS)}")
    out["label"] = WINNER_LABELS[w]
    dom = row.get("domain", row.get("language", "all"))
    if dom is None:
        dom = "all"
    if not isinstance(dom, str):
        raise RowError(f"field 'domain'/'language' must be a string, got {type(dom).__name__}")
    out["domain"] = dom
    return out


def read_preference(path: str | Path, on_error: str = "fail", seed: int = 0) -> PreferenceSet:
    """Read a human-preference file (PPE schema, or HH-RLHF chosen/rejected; see the module docstring)."""
    state = {"seed": seed}
    good, skipped = _read(path, lambda r, s, st: _parse_preference(r, s, state), on_error, "preference")
    rows = [r for _, r in good]
    col = (lambda k: [r[k] for r in rows])
    return PreferenceSet(col("question_id"), col("prompt"), col("response_1"), col("response_2"), col("model_a"),
                         col("model_b"), np.array(col("label"), dtype=np.int8), col("domain"),
                         [ln for ln, _ in good], str(path), skipped)


# -- best-of-K ------------------------------------------------------------------------------------------

def _parse_bok(row: dict, schema: str, state: dict) -> dict[str, Any]:
    out = {k: _str(row, k) for k in ("question_id", "prompt", "model_name")}
    K = 0
    while f"response_{K + 1}" in row:
        K += 1
    extra_responses = [k for k in row if k.startswith("response_") and k[9:].isdigit() and int(k[9:]) > K]
    if K == 0:
        raise RowError("no response_1..response_K fields")
    if extra_responses:
        raise RowError(f"responses are not numbered 1..K without gaps (found {', '.join(sorted(extra_responses))} "
                       f"after response_{K})")
    responses = [_str(row, f"response_{j}", allow_empty=True) for j in range(1, K + 1)]
    scores = row.get("scores")
    if isinstance(scores, np.ndarray):
        scores = scores.tolist()
    if not isinstance(scores, list):
        raise RowError(f"field 'scores' must be a list of {K} booleans, got {type(scores).__name__}")
    if len(scores) != K:
        raise RowError(f"field 'scores' has {len(scores)} entries but the row has {K} responses")
    if not all(isinstance(s, bool) or (isinstance(s, int) and s in (0, 1)) for s in scores):
        raise RowError("field 'scores' must hold booleans (true/false or 0/1)")
    labels = [bool(s) for s in scores]
    ms = row.get("mean_score")
    if not isinstance(ms, (int, float)) or isinstance(ms, bool) or not math.isfinite(ms):
        raise RowError(f"field 'mean_score' must be a number, got {ms!r}")
    if abs(ms - sum(labels) / K) > 1e-6:
        raise RowError(f"field 'mean_score' is {ms} but the mean of 'scores' is {sum(labels) / K:.6g}")
    if "K" in state and K != state["K"]:
        raise RowError(f"has {K} responses but the file's first valid row has {state['K']}; "
                       "every row needs the same K")
    state.setdefault("K", K)
    dom = row.get("domain", "all")
    if not isinstance(dom, str):
        raise RowError(f"field 'domain' must be a string, got {type(dom).__name__}")
    known = set(BOK_FIELDS) | {"domain"} | {f"response_{j}" for j in range(1, K + 1)}
    return {**out, "responses": responses, "labels": labels, "domain": dom,
            "extra": {k: v for k, v in row.items() if k not in known}}


def read_best_of_k(path: str | Path, on_error: str = "fail") -> BestOfKSet:
    """Read a best-of-K file (PPE schema; see the module docstring)."""
    good, skipped = _read(path, _parse_bok, on_error, "best_of_k")
    rows = [r for _, r in good]
    col = (lambda k: [r[k] for r in rows])
    return BestOfKSet(col("question_id"), col("prompt"), col("model_name"), col("responses"),
                      np.array(col("labels"), dtype=bool), col("domain"), col("extra"), [ln for ln, _ in good],
                      str(path), skipped)


def read_any(path: str | Path, on_error: str = "fail", seed: int = 0) -> PreferenceSet | BestOfKSet:
    """Read either schema, detected from the first row that parses."""
    for _, row in iter_rows(path):
        if isinstance(row, RowError):
            continue
        try:
            schema = detect_schema(row)
        except RowError:
            continue
        return read_best_of_k(path, on_error) if schema == "best_of_k" else read_preference(path, on_error, seed)
    raise DataError(f"{path}: no row in the human-preference, best-of-K or HH-RLHF schema")


# -- writing --------------------------------------------------------------------------------------------

def bok_row(question_id: str, prompt: str, model_name: str, responses: Sequence[str], labels: Sequence[bool],
            **extra: Any) -> dict[str, Any]:
    """One best-of-K row in the PPE schema (``mean_score`` computed from the labels)."""
    row: dict[str, Any] = {"question_id": question_id, "prompt": prompt, "model_name": model_name}
    row.update({f"response_{j + 1}": r for j, r in enumerate(responses)})
    row["scores"] = [bool(c) for c in labels]
    row["mean_score"] = sum(row["scores"]) / len(row["scores"])
    row.update(extra)
    return row


def write_rows(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as JSONL (``.jsonl``/``.jsonl.gz``) or parquet (``.parquet``, pyarrow)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        # parquet cannot store a struct without fields: an empty mapping (e.g. conv_metadata {}) becomes null
        clean = [{k: (None if isinstance(v, dict) and not v else v) for k, v in r.items()} for r in rows]
        with atomic_path(p) as tmp:
            pq.write_table(pa.Table.from_pylist(clean), tmp)
        return p
    opener = gzip.open if p.name.endswith(".gz") else open
    with atomic_path(p) as tmp, opener(tmp, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return p


def transcript_messages(prompt: str) -> list[dict[str, str]]:
    """An HH-style transcript (``\\n\\nHuman: ... \\n\\nAssistant: ...``) as chat messages, ending with
    the user's turn; any other prompt is one user message."""
    if "\n\nHuman:" not in prompt:
        return [{"role": "user", "content": prompt}]
    text = prompt
    if text.rstrip().endswith("Assistant:"):
        text = text.rstrip()[: -len("Assistant:")]
    msgs = []
    for chunk in text.split("\n\nHuman:")[1:]:
        human, _, assistant = chunk.partition("\n\nAssistant:")
        msgs.append({"role": "user", "content": human.strip()})
        if assistant.strip():
            msgs.append({"role": "assistant", "content": assistant.strip()})
    return msgs


def clip_prompt(prompt: str, max_chars: int) -> str:
    """Keep the end of a long prompt (the turns nearest the response), starting at a turn boundary
    (``\\n\\nHuman:``) where one falls inside the last ``max_chars`` characters; 0 keeps everything.

    >>> clip_prompt("\\n\\nHuman: a long story\\n\\nAssistant: ok\\n\\nHuman: and?\\n\\nAssistant:", 30)
    '\\n\\nHuman: and?\\n\\nAssistant:'
    """
    if not max_chars or len(prompt) <= max_chars:
        return prompt
    tail = prompt[-max_chars:]
    i = tail.find("\n\nHuman:")
    return tail[i:] if i >= 0 else "..." + tail
