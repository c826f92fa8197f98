"""The detector interface and the safe on-disk format every detector shares.

``ToxicityScorer.score(prompts)`` returns P(toxic) per prompt; ``decision_function(prompts)`` the
statistic the metrics rank by (for a logistic regression, the logit: the same ranking).

A saved detector is one ``.npz`` file of plain numeric arrays plus a ``meta`` entry holding a JSON
string (kind, format version, and for LM-based detectors the model's name, load spec, weight
fingerprint and prompt template). It is read with ``allow_pickle=False``: loading never runs code.
A detector saved for one model or template refuses to run on another (:class:`DetectorError`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from lmlab.config import ConfigError
from lmlab.io import atomic_path

FORMAT = "lmlab-detector/1"


class DetectorError(ConfigError):
    """A detector file is malformed, or was saved for another model/template than the one given."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(np.asarray(x, dtype=np.float64))


class ToxicityScorer:
    """Base class: subclasses set ``kind`` and implement ``decision_function``, ``score``, ``_arrays``, ``_from``.

    For a study (``lmlab run muli``), a detector also says what it needs (``needs_lm``), what it is fitted on
    (``inputs``) and how the study config builds it (:meth:`from_study`), so a new detector is one file and
    one line in :data:`lmlab.moderation.DETECTORS`, then one name in the study's ``detectors`` list.
    """

    kind: ClassVar[str]
    #: probability at or above which :meth:`flag` says toxic (class-balanced training puts the boundary at 0.5)
    threshold: float = 0.5
    #: scores through the serving LM's first-token logits (built with :class:`FirstTokenFeatures`)
    needs_lm: ClassVar[bool] = False
    #: what a study fits and scores it on: the prompt texts, their first-token logits, or their sentence embeddings
    inputs: ClassVar[Literal["text", "logits", "embedding"]] = "text"

    @classmethod
    def from_study(cls, cfg: Any, features: Any = None) -> list[StudyDetector]:
        """The detector(s) a study config (``seed`` ...) asks for under this registry name; ``features`` are the
        first-token features when ``needs_lm``. Default: one baseline, ``cls(seed=cfg.seed)``."""
        return [StudyDetector(cls.kind, cls.kind, lambda: cls(seed=cfg.seed), role="baseline",
                              sweep=cls.kind, claim_tag=cls.kind.replace("-", "_"))]

    def fit_inputs(self, X: Any, y: Any) -> ToxicityScorer:
        """Fit on the study's ``inputs`` (texts, logits or embeddings) of the training prompts."""
        return self.fit(X, y)  # type: ignore[attr-defined]

    def decision_inputs(self, X: Any) -> np.ndarray:
        return self.decision_function(X)

    def decision_function(self, prompts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """P(toxic) for each prompt, float64 in [0, 1]."""
        return sigmoid(self.decision_function(prompts))

    def flag(self, prompts: Sequence[str]) -> np.ndarray:
        return self.score(prompts) >= self.threshold

    # -- saving ------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "kind": self.kind, "threshold": self.threshold, **self.meta()}
        arrays = self._arrays()
        for k, v in arrays.items():
            if np.asarray(v).dtype == object:
                raise TypeError(f"array {k!r} has dtype object; only numeric arrays are saved")
        with atomic_path(path) as tmp:
            np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def _read(cls, path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(meta, arrays) of a saved detector, refused unless it is one of this class's kind."""
        meta, arrays = read_detector_file(path)
        if meta.get("kind") != cls.kind:
            raise DetectorError(f"{path} holds a {meta.get('kind')!r} detector, not {cls.kind!r}")
        return meta, arrays


def _no_report(det: ToxicityScorer) -> dict[tuple[str, ...], Any]:
    return {}


@dataclass
class StudyDetector:
    """One detector as a study evaluates it (built by :meth:`ToxicityScorer.from_study`)."""

    key: str  # saved as detector-{key}.npz
    label: str  # its name in the result tables, the bootstrap and the figures
    make: Callable[[], ToxicityScorer]  # a fresh, unfitted detector
    #: main: the study's subject; baseline: the main detector should beat it (claim muli_beats_{claim_tag});
    #: toy: a training-free single-token detector; variant: reported only
    role: Literal["main", "baseline", "toy", "variant"] = "baseline"
    sweep: str | None = None  # its name in the training-size sweep (None: not retrained there)
    claim_tag: str = ""
    #: what it adds to the study's metrics, as {path in the metrics tree: value}
    report: Callable[[Any], dict[tuple[str, ...], Any]] = _no_report


def read_detector_file(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    path = Path(path)
    if not path.exists():
        raise DetectorError(f"detector file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise DetectorError(f"{path} is not a detector file saved by lmlab (.npz without pickles): {e}") from None
    if "meta" not in arrays:
        raise DetectorError(f"{path} has no 'meta' entry; it was not saved by ToxicityScorer.save")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError:
        raise DetectorError(f"{path}: its 'meta' entry is not JSON") from None
    if meta.get("format") != FORMAT:
        raise DetectorError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}; re-save it with this lmlab")
    return meta, arrays


def check_same_lm(meta: dict[str, Any], features: Any, path: Any) -> None:
    """Refuse a detector saved for another model (weight fingerprint) or prompt template."""
    got = features.meta
    if meta.get("model_fingerprint") != got["model_fingerprint"]:
        raise DetectorError(
            f"detector {path} was trained on model {meta.get('model')!r} (fingerprint {meta.get('model_fingerprint')}), "
            f"but the given model is {got['model']!r} (fingerprint {got['model_fingerprint']}); load it with the model it "
            f"was trained on (--model {meta.get('model_spec', 'default')}) or train a new detector")
    if meta.get("template_key") != got["template_key"]:
        raise DetectorError(
            f"detector {path} was trained with prompt template {meta.get('template')} (key {meta.get('template_key')}), "
            f"but the features use {got['template']} (key {got['template_key']}); use the detector's template")


C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def fit_linear_cv(X: Any, y: Any, Cs: Sequence[float] = C_GRID, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Class-balanced L2 logistic regression, C picked by stratified k-fold average precision on the training
    set only; refit on all of it. Returns coef (d,), intercept, the chosen C and the CV table."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    y = np.asarray(y).astype(np.int64)
    folds = max(2, min(folds, int(y.sum()), int((1 - y).sum())))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    make = lambda C: LogisticRegression(C=C, class_weight="balanced", solver="liblinear", max_iter=1000,
                                             random_state=seed)  # noqa: E731
    table = {str(C): float(np.mean(cross_val_score(make(C), X, y, cv=cv, scoring="average_precision"))) for C in Cs}
    best = max(Cs, key=lambda C: table[str(C)])
    clf = make(best).fit(X, y)
    return {"coef": clf.coef_[0].astype(np.float64), "intercept": float(clf.intercept_[0]), "C": float(best),
            "cv_average_precision": table}
