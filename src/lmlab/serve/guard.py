"""The input guard: P(toxic) of the user's message from a detector; at or above the threshold the request is
refused (an OpenAI-format answer with ``finish_reason="content_filter"``).

The default detector is MULI (:mod:`lmlab.moderation.muli`) on the serving model's own first-token logits: the
bundled OpenAI moderation set (1,680 prompts) is split into a training part and a calibration part (stratified,
``guard.calib_frac`` held out); the detector is fitted on the training part and its threshold is the score at which
the calibration part's benign prompts reach ``guard.target_fpr`` false positives. It is built on the first start
for a model (one prefill per prompt of the set: minutes on a CPU for SmolLM2-135M; progress is logged) and saved
under ``<state_dir>/guard/`` keyed by the model's fingerprint, so later starts load it in a moment.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.config import ConfigError
from lmlab.serve.config import GuardConfig

log = logging.getLogger("lmlab.serve")

GUARD_VERSION = "serve-guard/1"
#: calibrated default guards shipped with lmlab (``muli-<key>.npz`` + ``.json``; see :func:`package_guard`)
PACKAGED_GUARD_DIR = Path(__file__).resolve().parent / "data" / "guard"


def threshold_at_fpr(benign_scores: np.ndarray, target_fpr: float) -> float:
    """The smallest threshold t with mean(benign >= t) <= target_fpr (flag at score >= t)."""
    s = np.sort(np.asarray(benign_scores, dtype=np.float64))
    if len(s) == 0:
        raise ConfigError("guard calibration: no benign prompts in the calibration split")
    k = int(np.floor(target_fpr * len(s)))  # at most k benign scores may be >= t
    if k >= len(s):
        return float(s[0])
    return float(np.nextafter(s[len(s) - 1 - k], np.inf))


class Guard:
    """``check(texts) -> (flagged, p_toxic)``; ``detector`` has ``score(texts)`` or ``score_logits`` via features."""

    def __init__(self, cfg: GuardConfig, detector: Any, threshold: float, info: dict[str, Any] | None = None):
        self.cfg, self.detector, self.threshold = cfg, detector, float(threshold)
        self.info = {**(info or {}), "threshold": self.threshold}

    def scores(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.detector.score(list(texts)), dtype=np.float64)

    def score(self, text: str) -> float:
        return float(np.asarray(self.detector.score([text]))[0])

    def check(self, text: str) -> tuple[bool, float]:
        p = self.score(text)
        return p >= self.threshold, p


class RemoteDetector:
    """P(toxic) from another lmlab gateway's ``/v1/moderations`` (the model host of a multi-worker gateway).
    The key, if the host needs one, is read from ``$LMLAB_MODEL_HOST_KEY``."""

    def __init__(self, url: str, timeout_s: float = 30.0):
        import os

        import httpx

        key = os.environ.get("LMLAB_MODEL_HOST_KEY")
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, timeout=timeout_s,
                                   headers={"authorization": f"Bearer {key}"} if key else {})
        info = self.client.get("/healthz").json().get("guard") or {}
        if "threshold" not in info:
            raise ConfigError(f"guard.detector: {url} has no guard (its /healthz reports none)")
        self.threshold = float(info["threshold"])

    def score(self, texts: Any) -> np.ndarray:
        r = self.client.post("/v1/moderations", json={"input": list(texts)})
        r.raise_for_status()
        return np.array([res["category_scores"]["toxic"] for res in r.json()["results"]], dtype=np.float64)


def _import(spec: str) -> Any:
    mod, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"guard.detector: cannot import {spec!r} ({e}); use module:attribute") from None
    return obj() if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "score")) else obj


def build_guard(cfg: GuardConfig, lm: Any, state_dir: Path, detector: Any = None) -> Guard | None:
    """The guard the config asks for (None when disabled). ``lm``: the serving model with logits (or None);
    ``detector``: an object with ``score(texts)`` that replaces the configured one (tests)."""
    if not cfg.enabled:
        return None
    if detector is not None:
        thr = cfg.threshold if cfg.threshold is not None else float(getattr(detector, "threshold", 0.5))
        return Guard(cfg, detector, thr, {"detector": type(detector).__name__})
    spec = cfg.detector
    if spec.startswith(("http://", "https://")):
        det = RemoteDetector(spec)
        thr = cfg.threshold if cfg.threshold is not None else det.threshold
        return Guard(cfg, det, thr, {"detector": f"remote {spec}"})
    if spec == "default":
        if lm is None:
            raise ConfigError("guard.detector = 'default' reads a local model's logits, but no backend is local; "
                              "set guard.detector to a saved text detector (.npz, e.g. tfidf-lr) or guard.enabled = false")
        det, meta = default_detector(cfg, lm, state_dir)
        thr = cfg.threshold if cfg.threshold is not None else float(meta["threshold"])
        return Guard(cfg, det, thr, {"detector": "muli (default)", **{k: meta.get(k) for k in (
            "target_fpr", "calib_fpr", "calib_tpr", "path", "source")}})
    if ":" in spec and not Path(spec).exists():
        det = _import(spec)
        thr = cfg.threshold if cfg.threshold is not None else float(getattr(det, "threshold", 0.5))
        return Guard(cfg, det, thr, {"detector": spec})
    from lmlab.moderation import load_detector
    from lmlab.moderation.base import read_detector_file

    meta, _ = read_detector_file(spec)
    needs_lm = meta.get("kind") in ("muli", "refusal-token")
    det = load_detector(spec, lm=lm if needs_lm else None, cache_dir=None) if needs_lm else load_detector(spec)
    thr = cfg.threshold if cfg.threshold is not None else float(getattr(det, "threshold", 0.5))
    return Guard(cfg, det, thr, {"detector": str(spec)})


def guard_key(cfg: GuardConfig, model_fingerprint: str, template_key: str, max_prompts: int | None = None) -> str:
    """The file key of a default guard: what it was built from (model weights, prompt template, calibration)."""
    from lmlab.io import fingerprint

    return fingerprint(GUARD_VERSION, model_fingerprint, template_key, cfg.target_fpr, cfg.calib_frac, cfg.seed,
                       max_prompts)


def default_detector(cfg: GuardConfig, lm: Any, state_dir: Path, max_prompts: int | None = None) -> tuple[Any, dict]:
    """MULI on ``lm``'s first-token logits, fitted on the bundled moderation set and calibrated to
    ``cfg.target_fpr`` on its held-out part; loaded from ``state_dir/guard`` when built before, else from the
    package when one was shipped for this model and calibration (:data:`PACKAGED_GUARD_DIR`), else built."""
    from lmlab.io import atomic_write_json
    from lmlab.moderation.data import load_default, stratified_split
    from lmlab.moderation.features import FirstTokenFeatures, PromptTemplate
    from lmlab.moderation.muli import MULIDetector

    template = PromptTemplate()
    feats = FirstTokenFeatures(lm, template, cache_dir=None)
    key = guard_key(cfg, lm.fingerprint, feats.template_key, max_prompts)
    out = Path(state_dir) / "guard" / f"muli-{key}.npz"
    side = out.with_suffix(".json")
    for path, source in ((out, "state_dir"), (PACKAGED_GUARD_DIR / out.name, "package")):
        if path.exists() and path.with_suffix(".json").exists():
            meta = {**json.loads(path.with_suffix(".json").read_text()), "path": str(path), "source": source}
            det = MULIDetector.load(path, feats)
            det.threshold = float(meta["threshold"])
            return det, meta
    if max_prompts is None:
        log.warning("guard: no calibrated guard is packaged for model %s (fingerprint %s, target_fpr %g, calib_frac %g, "
                    "seed %d); building it once from the bundled moderation set (10-30 min on one CPU core; saved "
                    "to %s; skip with guard.enabled = false)", lm.name, lm.fingerprint, cfg.target_fpr,
                    cfg.calib_frac, cfg.seed, out.parent)
    t0 = time.perf_counter()
    data = load_default()
    idx = np.arange(len(data))
    if max_prompts is not None and max_prompts < len(data):
        idx = np.sort(np.random.default_rng(cfg.seed).choice(len(data), max_prompts, replace=False))
        data = data.subset(idx)
    train, calib = stratified_split(data.labels, cfg.calib_frac, cfg.seed)
    log.info("guard: building the default MULI detector for %s on %d moderation prompts (once per model; saved to %s)",
             lm.name, len(data), out)
    # the bundled prompts' logits go through lmlab's on-disk feature cache (shared with the muli study), so a
    # rebuild with another target_fpr or split reuses them; request-time features are never written to disk
    feats_progress = FirstTokenFeatures(lm, template, cache_dir="default", progress=True)
    X = feats_progress.logits(data.texts)
    log.info("guard: first-token logits in %.0f s; fitting", time.perf_counter() - t0)
    det = MULIDetector(feats, solver="sgd", model_spec=str(getattr(lm, "name", "default")), seed=cfg.seed)
    det.fit_logits(X[train], data.labels[train])
    s_cal = det.score_logits(X[calib])
    y_cal = data.labels[calib]
    thr = threshold_at_fpr(s_cal[y_cal == 0], cfg.target_fpr)
    det.threshold = thr
    det.save(out)
    meta = {"threshold": thr, "target_fpr": cfg.target_fpr,
            "calib_fpr": float(np.mean(s_cal[y_cal == 0] >= thr)),
            "calib_tpr": float(np.mean(s_cal[y_cal == 1] >= thr)) if (y_cal == 1).any() else None,
            "n_train": int(len(train)), "n_calib": int(len(calib)), "seconds": round(time.perf_counter() - t0, 1),
            "model": str(lm.name), "path": str(out), "source": "built", "version": GUARD_VERSION}
    atomic_write_json(side, meta, indent=1)
    log.info("guard: built in %.0f s; threshold %.4f gives FPR %.3f / TPR %s on the calibration split",
             meta["seconds"], thr, meta["calib_fpr"], meta["calib_tpr"])
    return det, meta


def package_guard(cfg: GuardConfig, lm: Any, state_dir: Path, dest: Path = PACKAGED_GUARD_DIR) -> Path:
    """Ship the default guard built for ``lm`` (under ``state_dir``, built if missing) as package data: the
    detector (same arrays, compressed) and a JSON with its provenance and the calibration split's scores, which
    are recomputed here from the model's first-token logits and checked against the saved threshold and rates.
    Returns the written ``.npz``."""
    from lmlab.io import atomic_write_json
    from lmlab.moderation.data import DEFAULT_SHA256, load_default, split_fingerprint, stratified_split
    from lmlab.moderation.features import FirstTokenFeatures, PromptTemplate

    det, meta = default_detector(cfg, lm, state_dir)
    src = Path(meta["path"])
    data = load_default()
    train, calib = stratified_split(data.labels, cfg.calib_frac, cfg.seed)
    X = FirstTokenFeatures(lm, PromptTemplate(), cache_dir="default", progress=True).logits(
        [data.texts[i] for i in calib])
    s_cal = det.score_logits(X)
    y_cal = data.labels[calib]
    thr = threshold_at_fpr(s_cal[y_cal == 0], cfg.target_fpr)
    if thr != float(meta["threshold"]):
        raise ValueError(f"{src}: the calibration scores give threshold {thr}, the saved guard says {meta['threshold']}")
    saved = read_detector_meta(src)
    out = Path(dest) / src.name
    out.parent.mkdir(parents=True, exist_ok=True)
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)
    info = {"threshold": thr, "target_fpr": cfg.target_fpr,
            "calib_fpr": float(np.mean(s_cal[y_cal == 0] >= thr)),
            "calib_tpr": float(np.mean(s_cal[y_cal == 1] >= thr)),
            "n_train": int(len(train)), "n_calib": int(len(calib)),
            "n_calib_benign": int((y_cal == 0).sum()), "n_calib_toxic": int((y_cal == 1).sum()),
            "model": str(lm.name), "model_fingerprint": saved["model_fingerprint"], "lm_fingerprint": lm.fingerprint,
            "template_key": saved["template_key"], "key": src.stem.removeprefix("muli-"),
            "calib_frac": cfg.calib_frac, "seed": cfg.seed, "version": GUARD_VERSION,
            "calibration_set": {"name": "lmlab.moderation.data.load_default (OpenAI moderation evaluation set, "
                                        "1,680 prompts, bundled)", "sha256": DEFAULT_SHA256,
                                "split": f"stratified_split(labels, test_frac={cfg.calib_frac}, seed={cfg.seed}): "
                                         "fit on the first part, threshold from the held-out part",
                                "split_fingerprint": split_fingerprint(train, calib)},
            "build_seconds": meta.get("seconds"),
            "calib_scores": [float(x) for x in s_cal], "calib_labels": [int(y) for y in y_cal]}
    atomic_write_json(out.with_suffix(".json"), info, indent=1)
    return out


def read_detector_meta(path: Path) -> dict[str, Any]:
    """The JSON metadata stored inside a saved detector ``.npz`` (no arrays loaded)."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))
