"""Toxicity detection: MULI (first-token logits of the serving LLM) and honest baselines.

=================  ==========================================================================
``DETECTORS``      one registry line per detector (each in its own module)
``muli``           sparse L1 logistic regression on first-token log-odds (``muli.py``)
``refusal-token``  training-free: the first-token logit of a refusal-starting token (``refusal_token.py``)
``tfidf-lr``       TF-IDF + logistic regression on the text (``tfidf.py``)
``embed-lr``       MiniLM sentence embedding + logistic regression (``embed_lr.py``)
=================  ==========================================================================

Every detector is a :class:`ToxicityScorer`: ``score(prompts)`` -> P(toxic); the class says whether it
needs the serving LM (``needs_lm``) and how a study builds it (``from_study``). Save with
``det.save("x.npz")`` (plain arrays + JSON metadata, no pickle) and load with :func:`load_detector`::

    from lmlab.moderation import load_detector
    det = load_detector("runs/muli-quick/detector-muli.npz")   # loads the model the detector names
    det.score(["some user prompt"])                             # array([0.03])

Metrics: :mod:`lmlab.moderation.metrics`; data readers: :mod:`lmlab.moderation.data`; features:
:mod:`lmlab.moderation.features`; refusal rates of a chat model on flagged and benign prompts (greedy replies, a
refusal-string matcher): :mod:`lmlab.moderation.refusal`. Nothing heavy is imported with this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmlab.moderation.base import DetectorError, ToxicityScorer, read_detector_file
from lmlab.registry import Registry

DETECTORS = Registry("detector", {
    "muli": "lmlab.moderation.muli:MULIDetector",
    "refusal-token": "lmlab.moderation.refusal_token:RefusalTokenDetector",
    "tfidf-lr": "lmlab.moderation.tfidf:TfidfDetector",
    "embed-lr": "lmlab.moderation.embed_lr:EmbeddingDetector",
})

__all__ = ["DETECTORS", "DetectorError", "ToxicityScorer", "load_detector"]


def load_detector(path: str | Path, lm: Any = None, model: str | None = None, cache_dir: Any = "default",
                  batch_size: int = 8) -> ToxicityScorer:
    """Load a saved detector. LM-based detectors need their model: pass ``lm`` (checked against the detector's
    weight fingerprint and template), or ``model`` (a :func:`lmlab.lm.load_lm` spec), else the detector's
    own ``model_spec`` is loaded. A mismatching model or template raises :class:`DetectorError`."""
    meta, _ = read_detector_file(path)
    kind = meta.get("kind")
    try:
        cls = DETECTORS.get(str(kind))
    except KeyError:
        raise DetectorError(f"{path}: unknown detector kind {kind!r}; known: {', '.join(DETECTORS.names())}") from None
    if not cls.needs_lm:
        return cls.load(path)
    from lmlab.moderation.features import FirstTokenFeatures, PromptTemplate

    if lm is None:
        from lmlab.lm import load_lm

        lm = load_lm(model or meta.get("model_spec", "default"), batch_size=batch_size)
    template = PromptTemplate(**meta["template"])
    feats = FirstTokenFeatures(lm, template, cache_dir=cache_dir, batch_size=batch_size)
    return cls.load(path, feats)
