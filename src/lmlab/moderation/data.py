"""Readers for toxicity-labelled prompt sets, validated row by row, and a fixed stratified split.

=========================  ====================================================================
format                     reader
=========================  ====================================================================
OpenAI moderation JSONL    :func:`read_openai_moderation` (``.jsonl`` or ``.jsonl.gz``): one object
                           per line, ``prompt`` plus up to eight 0/1 category flags (``S H V HR SH
                           S3 H2 V2``); an absent flag means *unknown*. Toxic = any flag equal to 1.
ToxicChat CSV / parquet    :func:`read_toxicchat` (``lmsys/toxic-chat``, e.g. ``data/0124/
                           toxic-chat_annotation_test.csv`` or the hub's parquet export): columns
                           ``user_input``, ``toxicity`` (0/1), ``jailbreaking`` (0/1, implies toxic);
                           other columns (``conv_id``, ``model_output``, ...) are kept untouched.
=========================  ====================================================================

The OpenAI evaluation set (1,680 prompts, MIT, Copyright (c) 2022 OpenAI) ships with lmlab as
package data (``lmlab/moderation/data``, with its licence): :func:`load_default`. ToxicChat is
CC-BY-NC-4.0 and is not shipped; point :func:`read_toxicchat` at your own copy.

Every malformed row fails with one :class:`DataError` naming the file, the line (or row) and the
field; no row is silently dropped. Content warning: the texts are offensive by design; nothing in
this module prints them.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.config import ConfigError

OPENAI_CATEGORIES = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")
DEFAULT_FILE = "moderation-samples-1680.jsonl.gz"
DEFAULT_SHA256 = "ef3f7de86ee394fe337b0a566ba4b9c7db058f3caa8d6a4a0006138b663ab9a8"


class DataError(ConfigError):
    """A data file is missing or malformed. The message names the file, the row and the field."""


@dataclass
class ModerationSet:
    """Texts and binary labels (1 = toxic), plus per-category labels (-1 = unknown) where the format has them."""

    texts: list[str]
    labels: np.ndarray
    source: str
    categories: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.texts) != len(self.labels):
            raise DataError(f"{self.source}: {len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_pos(self) -> int:
        return int(self.labels.sum())

    def subset(self, idx: np.ndarray) -> ModerationSet:
        idx = np.asarray(idx, dtype=np.int64)
        return ModerationSet([self.texts[i] for i in idx], self.labels[idx], self.source,
                             {k: v[idx] for k, v in self.categories.items()},
                             {k: [v[i] for i in idx] for k, v in self.extra.items()})

    def describe(self) -> dict[str, Any]:
        """Counts only (never texts)."""
        d: dict[str, Any] = {"source": self.source, "n": len(self), "n_toxic": self.n_pos,
                             "toxic_share": round(self.n_pos / max(1, len(self)), 4)}
        if self.categories:
            d["categories"] = {k: {"pos": int((v == 1).sum()), "neg": int((v == 0).sum()), "unknown": int((v < 0).sum())}
                               for k, v in self.categories.items()}
        return d


def _open_text(path: Path) -> io.TextIOBase:
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if gz else open(path, encoding="utf-8")  # type: ignore[return-value]


def read_openai_moderation(path: str | Path) -> ModerationSet:
    """Read the OpenAI moderation JSONL format (gzip or plain). Toxic = any category flag equal to 1."""
    path = Path(path)
    texts: list[str] = []
    cats: dict[str, list[int]] = {k: [] for k in OPENAI_CATEGORIES}
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg}); each line must be one JSON object") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
                prompt = row.get("prompt")
                if not isinstance(prompt, str) or not prompt.strip():
                    raise DataError(f"{path}:{lineno}: field 'prompt' must be a non-empty string")
                unknown = sorted(set(row) - {"prompt", *OPENAI_CATEGORIES})
                if unknown:
                    raise DataError(f"{path}:{lineno}: unknown field(s) {unknown}; the OpenAI moderation format has "
                                    f"'prompt' and the flags {', '.join(OPENAI_CATEGORIES)}")
                for k in OPENAI_CATEGORIES:
                    v = row.get(k, -1)
                    if k in row and (isinstance(v, bool) or v not in (0, 1)):
                        raise DataError(f"{path}:{lineno}: field '{k}' must be 0 or 1 (or absent for unknown), got {v!r}")
                    cats[k].append(int(v))
                texts.append(prompt)
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot be read as UTF-8 JSON lines ({type(e).__name__}: {e})") from None
    if not texts:
        raise DataError(f"{path}: no rows; expected one JSON object per line")
    arr = {k: np.asarray(v, dtype=np.int64) for k, v in cats.items()}
    labels = np.any(np.stack(list(arr.values())) == 1, axis=0).astype(np.int64)
    return ModerationSet(texts, labels, str(path), arr)


TOXICCHAT_REQUIRED = ("user_input", "toxicity", "jailbreaking")


def _flag(value: Any, where: str, name: str) -> int:
    if isinstance(value, str):
        value = value.strip()
        if value in ("0", "1"):
            return int(value)
        if value.lower() in ("true", "false"):
            return int(value.lower() == "true")
    elif isinstance(value, (bool, np.bool_)):
        return int(value)
    elif isinstance(value, (int, np.integer)) and value in (0, 1):
        return int(value)
    elif isinstance(value, float) and value in (0.0, 1.0):
        return int(value)
    raise DataError(f"{where}: column '{name}' must be 0 or 1, got {value!r}")


def read_toxicchat(path: str | Path) -> ModerationSet:
    """Read a ToxicChat split (CSV or parquet). Rows with ``jailbreaking=1`` must have ``toxicity=1``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    rows: list[dict[str, Any]]
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{path}: reading parquet needs pyarrow: pip install pyarrow (or convert to CSV)") from None
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as e:  # noqa: BLE001 - pyarrow raises many types for damaged files
            raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {str(e)[:120]})") from None
    elif path.suffix in (".csv", ".gz"):
        try:
            with _open_text(path) as f:
                rows = list(csv.DictReader(f))
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{path}: not a readable UTF-8 CSV file ({type(e).__name__}: {e})") from None
    else:
        raise DataError(f"{path}: unknown ToxicChat file type '{path.suffix}'; use the .csv or .parquet file")
    if not rows:
        raise DataError(f"{path}: no rows")
    missing = [c for c in TOXICCHAT_REQUIRED if c not in rows[0]]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; ToxicChat files have {', '.join(TOXICCHAT_REQUIRED)} "
                        f"(found: {', '.join(map(str, rows[0]))})")
    texts, tox = [], []
    extra: dict[str, list[Any]] = {c: [] for c in rows[0] if c not in ("user_input", "toxicity")}
    for i, row in enumerate(rows):
        where = f"{path} row {i + 1}" + (f" (conv_id {row['conv_id']})" if row.get("conv_id") else "")
        text = row["user_input"]
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: column 'user_input' must be a non-empty string")
        t = _flag(row["toxicity"], where, "toxicity")
        j = _flag(row["jailbreaking"], where, "jailbreaking")
        if j and not t:
            raise DataError(f"{where}: jailbreaking=1 but toxicity=0; in ToxicChat jailbreaking implies toxic")
        texts.append(text)
        tox.append(t)
        for c in extra:
            extra[c].append(j if c == "jailbreaking" else row.get(c))
    return ModerationSet(texts, np.asarray(tox), str(path), extra=extra)


def default_path() -> Path:
    """The bundled OpenAI moderation evaluation set (package data)."""
    return Path(str(resources.files("lmlab.moderation").joinpath("data", DEFAULT_FILE)))


def load_default(check_hash: bool = True) -> ModerationSet:
    """The 1,680-prompt OpenAI moderation evaluation set shipped with lmlab (its sha256 is checked)."""
    path = default_path()
    if check_hash:
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"
        if digest != DEFAULT_SHA256:
            raise DataError(f"{path}: sha256 {digest[:12]}... is not the shipped file's {DEFAULT_SHA256[:12]}...; "
                            "reinstall lmlab (pip install -e .)")
    return read_openai_moderation(path)


def read_any(path: str | Path | None) -> ModerationSet:
    """The bundled set for ``None``/``""``/``"openai-moderation"``; else the reader the file's extension implies."""
    if path in (None, "", "openai-moderation"):
        return load_default()
    p = Path(path)  # type: ignore[arg-type]
    name = p.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json")):
        return read_openai_moderation(p)
    if name.endswith((".csv", ".parquet", ".csv.gz")):
        return read_toxicchat(p)
    raise DataError(f"{p}: unknown data format; use an OpenAI moderation .jsonl(.gz) or a ToxicChat .csv/.parquet")


def stratified_split(labels: np.ndarray, test_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified train/test indices (sorted), reproducible from ``seed``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=test_frac, random_state=seed, stratify=labels)
    return np.sort(tr), np.sort(te)


def split_fingerprint(train: np.ndarray, test: np.ndarray) -> str:
    h = hashlib.sha256(np.asarray(train, dtype=np.int64).tobytes() + b"|" + np.asarray(test, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]
