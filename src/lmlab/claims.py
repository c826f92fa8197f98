"""One claim schema for every study, tool and sweep: what the paper says, what we measured, the rule.

A :class:`Claim` is produced by a rule helper, which returns the status *and* the words of the rule
together, so a threshold is written once (as a named constant at the top of the study)::

    >>> from lmlab.claims import Claim, at_least
    >>> MIN_ACC = 0.9
    >>> c = Claim.judged("acc", "the model learns the task", paper_value=0.99, measured=0.95,
    ...                  rule=at_least(0.95, MIN_ACC, what="test accuracy"))
    >>> c.status, c.tolerance
    ('pass', 'test accuracy >= 0.9')

Statuses: ``pass``, ``fail``, ``not_comparable`` (the claim cannot be tested at this config; it
never counts as a pass). ``holds_without_training`` marks a claim that still passes when the study's
learning is switched off (``--control``) because it is a property of the data or the metric; the
report shows such claims apart, with ``holds_reason``.

:class:`Summary` is the whole ``summary.json`` of one run; :func:`aggregate` turns the summaries of
several seeds into per-claim pass rates, means and bootstrap intervals (used by ``lmlab sweep``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["pass", "fail", "not_comparable"]
STATUSES: tuple[Status, ...] = ("pass", "fail", "not_comparable")
#: bumped when a field of summary.json changes meaning; readers refuse newer majors
SCHEMA_VERSION = 2
#: a claim "holds" across seeds when it passes on at least this share of them (``aggregate``)
HOLDS_SHARE = 0.8


# -- rules -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """The outcome of a rule helper: the status and the rule in words (``Claim.tolerance``)."""

    status: Status
    tolerance: str

    @property
    def ok(self) -> bool:
        return self.status == "pass"

    def __and__(self, other: Rule) -> Rule:
        return all_of(self, other)


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _g(x: float) -> str:
    return f"{x:.4g}"


def _label(what: str) -> str:
    return what or "measured"


def check(ok: bool | None) -> Status:
    """Map a test to a status; None (not measurable, e.g. no transition) is a failure."""
    return "pass" if ok else "fail"


def at_least(measured: Any, threshold: float, what: str = "") -> Rule:
    """``measured >= threshold``; a missing or non-finite measurement fails."""
    v = _num(measured)
    return Rule(check(v is not None and v >= threshold), f"{_label(what)} >= {_g(threshold)}")


def at_most(measured: Any, threshold: float, what: str = "") -> Rule:
    """``measured <= threshold``; a missing or non-finite measurement fails."""
    v = _num(measured)
    return Rule(check(v is not None and v <= threshold), f"{_label(what)} <= {_g(threshold)}")


def greater(measured: Any, other: Any, what: str = "", than: str = "") -> Rule:
    """``measured > other`` (strict; ties fail)."""
    a, b = _num(measured), _num(other)
    return Rule(check(a is not None and b is not None and a > b),
                f"{_label(what)} > {than or (_g(b) if b is not None else 'other')}")


def within(measured: Any, target: float, tol: float, what: str = "", relative: bool = False) -> Rule:
    """``|measured - target| <= tol`` (``relative``: ``<= tol * |target|``)."""
    v = _num(measured)
    bound = tol * abs(target) if relative else tol
    words = f"|{_label(what)} - {_g(target)}| <= {_g(tol)}{' x target' if relative else ''}"
    return Rule(check(v is not None and abs(v - target) <= bound), words)


def between(measured: Any, lo: float, hi: float, what: str = "") -> Rule:
    """``lo <= measured <= hi``."""
    v = _num(measured)
    return Rule(check(v is not None and lo <= v <= hi), f"{_g(lo)} <= {_label(what)} <= {_g(hi)}")


def ci_excludes(ci: Sequence[float] | None, value: float = 0.0, side: Literal["above", "below", "either"] = "above",
                what: str = "") -> Rule:
    """A confidence interval ``(lo, hi)`` lies entirely above / below ``value`` (a significant difference)."""
    lo, hi = (_num(ci[0]), _num(ci[1])) if ci is not None and len(ci) == 2 else (None, None)
    name = f"CI of {_label(what)}"
    if side == "above":
        return Rule(check(lo is not None and lo > value), f"{name} lower bound > {_g(value)}")
    if side == "below":
        return Rule(check(hi is not None and hi < value), f"{name} upper bound < {_g(value)}")
    ok = lo is not None and hi is not None and (lo > value or hi < value)
    return Rule(check(ok), f"{name} excludes {_g(value)}")


def is_true(ok: bool | None, words: str) -> Rule:
    """A rule that is not a single comparison: the caller computes ``ok`` and states the rule in words."""
    return Rule(check(ok), words)


def all_of(*rules: Rule) -> Rule:
    """Every rule passes; a not-comparable part makes the whole not comparable."""
    words = " and ".join(r.tolerance for r in rules)
    if any(r.status == "not_comparable" for r in rules):
        return Rule("not_comparable", words)
    return Rule(check(all(r.ok for r in rules)), words)


def not_comparable(reason: str) -> Rule:
    """This config cannot test the claim; ``reason`` says why (and what would)."""
    return Rule("not_comparable", reason)


# -- claims and summaries ------------------------------------------------------------------------------------
@dataclass
class Claim:
    """One headline claim: what the paper says, what we measured, and the rule that decides."""

    id: str  # stable across versions: sweeps and reports join on it
    claim: str
    paper_value: Any
    measured: Any
    tolerance: str  # the rule, in words, as produced by the rule helper that computed `status`
    status: Status
    source: str = ""  # where the paper's number comes from: [abstract], [code], [secondary]...
    evidence: dict[str, Any] = field(default_factory=dict)
    #: still passes with learning switched off (a property of the data or metric); see ``holds_reason``
    holds_without_training: bool = False
    holds_reason: str = ""
    #: the scale it was tested at, when it differs from the paper's (e.g. "135M model, 48 prompts")
    scale: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"claim '{self.id}': status {self.status!r} is not one of {', '.join(STATUSES)}")
        if self.holds_without_training and not self.holds_reason:
            raise ValueError(f"claim '{self.id}': holds_without_training needs a one-line holds_reason")

    @classmethod
    def judged(cls, id: str, claim: str, paper_value: Any, measured: Any, rule: Rule, **kwargs: Any) -> Claim:
        """A claim whose status and tolerance come from one rule helper."""
        return cls(id=id, claim=claim, paper_value=paper_value, measured=measured,
                   tolerance=rule.tolerance, status=rule.status, **kwargs)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Claim:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


def _default_provenance() -> dict[str, Any]:
    from lmlab.config import provenance

    return provenance()


@dataclass
class Summary:
    """The ``summary.json`` of one run. Studies return claims, metrics and figures (:class:`Result`);
    :meth:`lmlab.studies.base.Study.run` fills the rest."""

    study: str
    claims: list[Claim]
    config: dict[str, Any]
    seed: int
    quick: bool
    task_version: str
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    provenance: dict[str, Any] = field(default_factory=_default_provenance)
    #: True for a ``--control`` run (learning switched off): its passes are the defects to look at
    control: bool = False
    #: per stage: {"computed": bool, "fingerprint": str, "reason": str} (computed now, or reused and from what)
    stages: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def counts(self) -> dict[str, int]:
        return {
            "n_pass": sum(c.status == "pass" for c in self.claims),
            "n_fail": sum(c.status == "fail" for c in self.claims),
            "n_not_comparable": sum(c.status == "not_comparable" for c in self.claims),
            "n_holds_without_training": sum(c.holds_without_training for c in self.claims),
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(self.counts())
        for c, cd in zip(self.claims, d["claims"]):
            cd["passed"] = c.passed
        return finite(d)

    def write(self, out_dir: str | Path) -> Path:
        from lmlab.io import atomic_write_text

        return atomic_write_text(Path(out_dir) / "summary.json", json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Summary:
        version = int(d.get("schema_version", 1))
        if version > SCHEMA_VERSION:
            raise ValueError(f"summary.json has schema_version {version}; this lmlab reads <= {SCHEMA_VERSION}: "
                             "upgrade lmlab")
        names = cls.__dataclass_fields__
        kw = {k: v for k, v in d.items() if k in names and k != "claims"}
        kw["schema_version"] = SCHEMA_VERSION
        return cls(claims=[Claim.from_dict(c) for c in d.get("claims", [])], **kw)

    @classmethod
    def read(cls, path: str | Path) -> Summary:
        path = Path(path)
        if path.is_dir():
            path = path / "summary.json"
        from lmlab.io import read_json

        data: Any = read_json(path, fix="rerun the study")
        for key in ("study", "claims"):
            if key not in data:
                raise ValueError(f"{path} has no '{key}' field: it was not written by an lmlab study")
        return cls.from_dict(data)


@dataclass
class Result:
    """What a study's ``execute`` returns; ``Study.run`` turns it into a :class:`Summary`."""

    claims: list[Claim]
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    task_version: str = ""
    stages: dict[str, Any] = field(default_factory=dict)


def finite(obj: Any) -> Any:
    """JSON has no NaN/inf: write them as null (recursively)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


# -- across seeds --------------------------------------------------------------------------------------------
def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean (None with fewer than 2 finite values)."""
    import numpy as np

    x = np.asarray([v for v in (_num(v) for v in values) if v is not None], dtype=float)
    if len(x) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


MAX_LEAVES = 24  # numeric leaves of a dict-valued measurement aggregated per claim (the rest are left out)


def numeric_leaves(x: Any, prefix: str = "") -> dict[str, float]:
    """``{"a.b": value}`` for every finite number in a (nested) dict measurement; lists and booleans are left out.

    >>> numeric_leaves({"p_target": 0.29, "by_k": {"1": 0.16, "2": None}, "ok": True})
    {'p_target': 0.29, 'by_k.1': 0.16}
    """
    out: dict[str, float] = {}
    if isinstance(x, dict):
        for k, v in x.items():
            out.update(numeric_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    elif not isinstance(x, bool) and isinstance(x, (int, float)) and prefix:
        v = _num(x)
        if v is not None:
            out[prefix] = v
    return out


def leaf_aggregates(measured: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """For dict-valued measurements (one per run): per numeric leaf present in every run, the mean, the bootstrap
    CI of the mean, min and max (at most :data:`MAX_LEAVES`, in the first run's order). Empty for scalars."""
    if not measured or not all(isinstance(m, dict) for m in measured):
        return {}
    leaves = [numeric_leaves(m) for m in measured]
    common = [k for k in leaves[0] if all(k in lv for lv in leaves[1:])][:MAX_LEAVES]
    out = {}
    for k in common:
        vals = [lv[k] for lv in leaves]
        out[k] = {"mean": sum(vals) / len(vals), "ci95": bootstrap_mean_ci(vals), "min": min(vals), "max": max(vals)}
    return out


def aggregate(summaries: Iterable[Summary], holds_share: float = HOLDS_SHARE,
              n_errors: int = 0) -> dict[str, dict[str, Any]]:
    """Per claim id over several runs (seeds): pass rate, status counts, measured mean and bootstrap CI (for a
    dict-valued measurement, per numeric leaf in ``measured_leaves``), the paper's value, and ``holds`` (passes on at least ``holds_share`` of the runs that could test it).

    ``n_errors``: runs of the same setting that raised before writing a summary (a sweep's failed
    trials). They count as runs that did not pass, so a claim cannot hold by its crashes being left out."""
    rows: dict[str, dict[str, Any]] = {}
    for s in summaries:
        for c in s.claims:
            r = rows.setdefault(c.id, {"claim": c.claim, "paper_value": c.paper_value, "tolerance": c.tolerance,
                                       "seeds": [], "statuses": [], "measured": []})
            r["seeds"].append(s.seed)
            r["statuses"].append(c.status)
            r["measured"].append(c.measured)
    out: dict[str, dict[str, Any]] = {}
    for cid, r in rows.items():
        testable = [st for st in r["statuses"] if st != "not_comparable"]
        n_pass = sum(st == "pass" for st in r["statuses"])
        nums = [v for v in (_num(m) for m in r["measured"]) if v is not None]
        rate = n_pass / (len(testable) + n_errors) if testable else None
        out[cid] = {
            "claim": r["claim"], "paper_value": r["paper_value"], "tolerance": r["tolerance"],
            "n_runs": len(r["statuses"]), "n_pass": n_pass, "n_fail": sum(st == "fail" for st in r["statuses"]),
            "n_not_comparable": len(r["statuses"]) - len(testable), "n_errors": n_errors, "pass_rate": rate,
            "holds": bool(rate is not None and rate >= holds_share), "holds_share": holds_share,
            "measured_mean": (sum(nums) / len(nums)) if nums else None,
            "measured_ci95": bootstrap_mean_ci(nums), "seeds": r["seeds"], "measured": r["measured"],
            # a dict-valued measurement has no one mean: each of its numbers gets one (mean, CI, min, max)
            "measured_leaves": leaf_aggregates(r["measured"]),
            "statuses": r["statuses"],
        }
    return finite(out)
