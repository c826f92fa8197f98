"""What every study shares: claims with tolerances, summary.json, figures, run directories.

A study is one module per paper with a frozen config (the paper's setting), a documented
``--quick`` variant, and a ``run(cfg, out_dir, resume)`` that trains, analyses, plots and writes
``summary.json``. Each headline claim of the paper becomes a :class:`Claim`: the paper's number,
our measured number, and a pass/fail decided by a tolerance written in code next to it.
A claim we did not test at this config says so (status ``not_comparable``) rather than passing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

from lmlab.claims import (Claim, Result, Rule, Status, Summary, all_of, at_least, at_most, between, check,
                          ci_excludes, finite, greater, is_true, not_comparable, within)
from lmlab.config import Config, ConfigError, LMConfig

__all__ = ["Claim", "Result", "Rule", "Status", "Study", "Summary", "all_of", "at_least", "at_most", "between",
           "check", "ci_excludes", "greater", "is_true", "load_study_lm", "model_stage", "not_comparable", "within", "pyplot",
           "save_figure"]

_finite = finite  # older name


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (studies run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: Path, name: str) -> str:
    """Lay out, write ``out/name`` as PNG, close; returns ``name`` for Summary.figures."""
    from lmlab.io import atomic_path

    fig.tight_layout()
    with atomic_path(Path(out) / name) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    pyplot().close(fig)
    return name


class Study:
    """Base class: subclasses set ``name``, ``title``, ``paper``, ``config_cls`` and implement ``execute``.

    ``execute(cfg, out, quick, resume)`` returns a :class:`~lmlab.claims.Result` (claims, metrics, figures,
    task version); :meth:`run` writes ``config.json``, times the run and fills name, config, seed, quick,
    control and provenance (taken when the run starts; ``git_at_end`` lists what differed when it ended) into
    ``summary.json``. ``control=True`` runs :meth:`control_config` instead: the
    same pipeline with the study's learning switched off, whose claims should fail.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    paper: ClassVar[str] = ""
    config_cls: ClassVar[type[Config]]
    #: the study loads a pretrained LM (its config has an ``lm`` section or a ``model`` spec)
    needs_lm: ClassVar[bool] = False
    #: overrides on top of ``--quick`` that make a seconds-scale run of the same pipeline (the test that runs
    #: every study's ``--control`` uses them; a study with an ``lm`` section gets a tiny random LM as well)
    tiny: ClassVar[tuple[str, ...]] = ()
    #: model wheels the tiny run still needs (``"minilm"``: all-MiniLM-L6-v2); the control test skips without them
    tiny_needs: ClassVar[tuple[str, ...]] = ()

    def default_config(self) -> Config:
        return self.config_cls()

    def quick_config(self) -> Config:
        return self.default_config()

    def control_config(self, cfg: Config) -> Config:
        """``cfg`` with learning switched off (untrained model, shuffled labels, random embedder...)."""
        raise ConfigError(f"--control: study '{self.name}' has no negative control yet")

    def lm_needs(self, cfg: Config) -> tuple[str, ...]:
        """The capabilities (:mod:`lmlab.lm.protocols`) this run asks of its ``lm`` section's model; :meth:`run`
        checks them against the backend class before it writes anything. ``()``: nothing checked up front."""
        return ()

    def check_lm(self, cfg: Config) -> None:
        """One-line :class:`lmlab.lm.LMError` when the backend of ``cfg.lm.model`` lacks a capability the run needs
        (decided from the spec alone: nothing is loaded or contacted)."""
        needs = self.lm_needs(cfg)
        if not needs:
            return
        from lmlab.lm import backend_class
        from lmlab.lm.base import missing_capability

        spec = str(cfg.lm.model)  # type: ignore[attr-defined]
        err = missing_capability(backend_class(spec), list(needs), spec)
        if err is not None:
            raise err

    def run(self, cfg: Config, out_dir: str | Path, quick: bool = False, resume: bool = True,
            control: bool = False) -> Summary:
        from lmlab.config import provenance
        from lmlab.io import atomic_write_text

        # taken before anything runs: the commit is the code this run started from, not one made while it ran
        prov = provenance()

        if control:
            cfg = self.control_config(cfg)
        # a model that cannot do what the run asks fails here, before the run directory or config.json exists
        self.check_lm(cfg)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # The full config, loadable again with `lmlab run STUDY --config out/config.json`.
        atomic_write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2))
        started = time.perf_counter()
        result = self.execute(cfg, out, quick=quick, resume=resume)
        if isinstance(result, Summary):  # older studies build the summary themselves
            summary = result
        else:
            summary = Summary(self.name, result.claims, cfg.to_dict(), int(getattr(cfg, "seed", 0)), quick,
                              result.task_version or f"{self.name}/1", result.metrics, result.figures,
                              stages=result.stages, provenance=prov)
        summary.control = control
        summary.seconds = round(time.perf_counter() - started, 2)
        end = provenance()
        moved = {k: end[k] for k in ("git_commit", "git_dirty") if end.get(k) != prov.get(k)}
        summary.provenance = {**prov, **({"git_at_end": moved} if moved else {})}
        summary.write(out)
        return summary

    def execute(self, cfg: Any, out: Path, quick: bool, resume: bool) -> Result | Summary:
        raise NotImplementedError


def model_stage(lm: Any) -> dict[str, Any] | None:
    """The ``stages`` record of a loaded model's de-quantized cache (GGUF models: ``lm.load_info``), or None."""
    info = getattr(lm, "load_info", None)
    if not isinstance(info, dict) or "source" not in info:
        return None
    if info["source"] == "cache":
        reason = "reused: the de-quantized cache with the same fingerprint"
    else:
        reason = "de-quantized now" + (f": the cache was rebuilt because {info['rebuilt_because']}"
                                       if info.get("rebuilt_because") else "")
    return {"computed": info["source"] != "cache", "fingerprint": info.get("cache_fingerprint", ""), "reason": reason}


def load_study_lm(section: LMConfig, needs: tuple[str, ...] = ("text",)) -> Any:
    """The pretrained model of a study's ``lm`` section, with the capabilities it ``needs`` checked at load
    time (one-line :class:`lmlab.lm.LMError` when the backend lacks one; :meth:`Study.lm_needs` checks the same
    before the run writes anything)."""
    from lmlab.lm import load_lm

    return load_lm(section.model, device=section.device, batch_size=section.batch_size, needs=needs)
