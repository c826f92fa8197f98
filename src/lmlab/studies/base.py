"""What every study shares: claims with tolerances, summary.json, figures, run directories.

A study is one module per paper with a frozen config (the paper's setting), a documented
``--quick`` variant, and a ``run(cfg, out_dir, resume)`` that trains, analyses, plots and writes
``summary.json``. Each headline claim of the paper becomes a :class:`Claim`: the paper's number,
our measured number, and a pass/fail decided by a tolerance written in code next to it.
A claim we did not test at this config says so (status ``not_comparable``) rather than passing.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from lmlab.config import Config, provenance

Status = Literal["pass", "fail", "not_comparable"]


@dataclass
class Claim:
    """One headline claim: what the paper says, what we measured, and the rule that decides."""

    id: str
    claim: str
    paper_value: Any
    measured: Any
    tolerance: str  # the rule, in words, mirroring the code that computes `status`
    status: Status
    source: str = ""  # where the paper's number comes from: [abstract], [code], [secondary]...
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def check(ok: bool | None) -> Status:
    """Map a tolerance test to a status; None (not measurable, e.g. no transition) is a failure."""
    return "pass" if ok else "fail"


@dataclass
class Summary:
    study: str
    claims: list[Claim]
    config: dict[str, Any]
    seed: int
    quick: bool
    task_version: str
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    provenance: dict[str, Any] = field(default_factory=provenance)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["n_pass"] = sum(c.status == "pass" for c in self.claims)
        d["n_fail"] = sum(c.status == "fail" for c in self.claims)
        d["n_not_comparable"] = sum(c.status == "not_comparable" for c in self.claims)
        for c, cd in zip(self.claims, d["claims"]):
            cd["passed"] = c.passed
        return _finite(d)

    def write(self, out_dir: Path) -> Path:
        path = Path(out_dir) / "summary.json"
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (studies run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: Path, name: str) -> str:
    """Lay out, write ``out/name`` as PNG, close; returns ``name`` for Summary.figures."""
    fig.tight_layout()
    fig.savefig(Path(out) / name, dpi=110)
    pyplot().close(fig)
    return name


class Study:
    """Base class: subclasses set ``name``, ``config_cls`` and implement ``quick_config`` and ``execute``."""

    name: ClassVar[str]
    title: ClassVar[str]
    paper: ClassVar[str]
    config_cls: ClassVar[type[Config]]

    def default_config(self) -> Config:
        return self.config_cls()

    def quick_config(self) -> Config:
        return self.default_config()

    def run(self, cfg: Config, out_dir: str | Path, quick: bool = False, resume: bool = True) -> Summary:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # The full config, loadable again with `lmlab run STUDY --config out/config.json`.
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        started = time.perf_counter()
        summary = self.execute(cfg, out, quick=quick, resume=resume)
        summary.seconds = round(time.perf_counter() - started, 2)
        summary.write(out)
        return summary

    def execute(self, cfg: Any, out: Path, quick: bool, resume: bool) -> Summary:
        raise NotImplementedError
