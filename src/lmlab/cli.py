"""Command line: ``lmlab list | run STUDY | moderate TEXT... | report``.

Errors in configs, data files and checkpoints print one line (``error: ...``) and exit with code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="lmlab: reproduce language-model research on a laptop.")


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _set_threads(threads: int) -> None:
    """--threads N: N threads for torch and for numpy's BLAS (threadpoolctl). Both default to one per core,
    which thrashes when other jobs share the cores (a batched numpy product in the routing study: 40x slower)."""
    if threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(threads)  # stays in force for the rest of the process


def _field_values(cfg: object, key: str) -> list[object]:
    """Every value of field ``key`` anywhere in a config tree."""
    import dataclasses

    out: list[object] = []
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        for f in dataclasses.fields(cfg):
            v = getattr(cfg, f.name)
            if f.name == key:
                out.append(v)
            out += _field_values(v, key)
    elif isinstance(cfg, (list, tuple)):
        for v in cfg:
            out += _field_values(v, key)
    return out


@app.command("list")
def list_studies(
    names: Annotated[bool, typer.Option("--names", help="study names only, one a line (for scripts)")] = False,
) -> None:
    """List the studies that `lmlab run` knows, and the synthetic tasks they use."""
    from lmlab.studies import STUDIES
    from lmlab.tasks import TASKS

    if names:
        typer.echo("\n".join(STUDIES.names()))
        return
    typer.echo("studies:")
    for name in STUDIES.names():
        cls = STUDIES.get(name)
        typer.echo(f"  {name:20s} {cls.title}{'  [pretrained LM]' if cls.needs_lm else ''}")
    typer.echo("tasks:")
    for name in TASKS.names():
        task = TASKS.get(name)
        typer.echo(f"  {name:20s} {task.version}")


@app.command()
def run(
    study: Annotated[str, typer.Argument(help="study name, see `lmlab list`")],
    quick: Annotated[bool, typer.Option("--quick", help="documented smaller variant that runs in minutes on a CPU")] = False,
    control: Annotated[bool, typer.Option("--control", help="negative control: the same pipeline with learning "
                                                            "switched off; its claims should fail")] = False,
    seed: Annotated[Optional[int], typer.Option(help="seed for data and initialisation")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run directory (default runs/STUDY[-quick]-seedN)")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:N")] = None,
    config: Annotated[Optional[Path], typer.Option(help="JSON config file (the study's full config)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override, e.g. --set model.d_model=128")] = None,
    resume: Annotated[bool, typer.Option("--resume/--fresh", help="continue from the run directory's checkpoint")] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")] = True,
    model: Annotated[Optional[str], typer.Option(help="pretrained LM for llm-* studies: default (embedded SmolLM2), "
                                                      "a .gguf file, or a local Hugging Face model directory")] = None,
    threads: Annotated[int, typer.Option(help="PyTorch CPU threads (0: torch's default). Use 1 when other jobs "
                                               "share the cores: tiny models gain little from a second thread and "
                                               "lose several-fold when it has to wait for a busy core")] = 0,
    rm: Annotated[Optional[list[str]], typer.Option("--rm", help="reward model(s) for reward-eval (repeat the "
                                                    "option): length, judge, judge-pairwise, implicit, hf:PATH")] = None,
    data: Annotated[Optional[list[str]], typer.Option("--data", help="data file(s) for reward-eval (repeat the "
                                                      "option): best-of-K or human-preference JSONL/parquet")] = None,
) -> None:
    """Run a study: train, analyse, write figures and summary.json."""
    from lmlab.config import ConfigError, LMConfig, apply_overrides, load_config_file, set_everywhere
    from lmlab.lm import LMError
    from lmlab.studies import STUDIES
    from lmlab.train import CheckpointError

    if threads < 0:
        _fail(f"--threads must be >= 0 (0: torch's default), got {threads}")
        return
    _set_threads(threads)
    try:
        s = STUDIES.get(study)()
        cfg = load_config_file(s.config_cls, config) if config else (s.quick_config() if quick else s.default_config())
        cfg = apply_overrides(cfg, list(set_ or []))
        # One home per setting: --seed is the top-level seed; --device and --progress reach every section
        # that has the field (each trained component's train section, the lm section); --model is lm.model.
        if seed is not None:
            cfg = apply_overrides(cfg, {"seed": seed})
        if device is not None:
            cfg, where = set_everywhere(cfg, "device", device)
            if not where:
                raise ConfigError(f"--device: study '{study}' runs no model on a device")
        cfg, _ = set_everywhere(cfg, "progress", progress)
        if model is not None:
            if isinstance(getattr(cfg, "lm", None), LMConfig):
                cfg = apply_overrides(cfg, {"lm.model": model})
            elif isinstance(getattr(cfg, "model", None), str):
                cfg = apply_overrides(cfg, {"model": model})
            else:
                raise ConfigError(f"--model: study '{study}' trains its own model; --model is for studies with an "
                                  "lm section (see `lmlab list`)")
        for flag, key, values in (("--rm", "rms", rm), ("--data", "data", data)):
            if values:
                if not hasattr(cfg, key):
                    raise ConfigError(f"{flag}: study '{study}' takes no {flag}; it is for reward-eval")
                cfg = apply_overrides(cfg, {key: list(values)})
        devices = [str(d) for d in _field_values(cfg, "device")]
        if any(d.startswith("cuda") for d in devices):
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("device: CUDA was asked for but torch sees no GPU; use --device cpu")
        out = out or Path("runs") / f"{study}{'-quick' if quick else ''}{'-control' if control else ''}-seed{cfg.seed}"
        summary = s.run(cfg, out, quick=quick, resume=resume, control=control)
    except (ConfigError, CheckpointError, LMError) as e:
        _fail(str(e).strip("'\""))
        return
    typer.echo(f"{study}: {summary.to_dict()['n_pass']}/{len(summary.claims)} claims pass "
               f"({summary.seconds:.0f} s); summary: {Path(out) / 'summary.json'}")
    for c in summary.claims:
        typer.echo(f"  [{c.status:>14s}] {c.id}: paper {json.dumps(c.paper_value)} | ours {json.dumps(c.measured)}")


@app.command()
def moderate(
    texts: Annotated[Optional[list[str]], typer.Argument(help="prompts to score (or use --file)")] = None,
    detector: Annotated[Optional[Path], typer.Option(help="saved detector (.npz), e.g. runs/muli-quick/detector-muli.npz "
                                                          "from `lmlab run muli --quick`")] = None,
    file: Annotated[Optional[Path], typer.Option(help="text file, one prompt per line")] = None,
    model: Annotated[Optional[str], typer.Option(help="LM for first-token detectors (default: the one the detector "
                                                      "was saved with); a different model is refused")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="flag when P(toxic) >= this (default: the detector's, 0.5)")] = None,
    show_text: Annotated[bool, typer.Option("--show-text", help="echo each prompt next to its score (off: texts can "
                                                                 "be offensive)")] = False,
    threads: Annotated[int, typer.Option(help="PyTorch CPU threads (0: torch's default)")] = 0,
) -> None:
    """Score prompts with a saved toxicity detector: one JSON line per prompt (index, p_toxic, flagged)."""
    from lmlab.lm import LMError
    from lmlab.moderation import DetectorError, load_detector

    if detector is None:
        _fail("--detector is required: a .npz saved by `lmlab run muli` (e.g. runs/muli-quick/detector-muli.npz)")
        return
    prompts = list(texts or [])
    if file is not None:
        if not file.exists():
            _fail(f"--file {file} does not exist")
            return
        prompts += [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        _fail("no prompts: pass them as arguments or with --file")
        return
    if threshold is not None and not 0 <= threshold <= 1:
        _fail(f"--threshold must be in [0, 1], got {threshold}")
        return
    _set_threads(threads)
    try:
        det = load_detector(detector, model=model)
        probs = det.score(prompts)
    except (DetectorError, LMError) as e:
        _fail(str(e).strip("'\""))
        return
    thr = det.threshold if threshold is None else threshold
    for i, (text, p) in enumerate(zip(prompts, probs)):
        row = {"index": i, "p_toxic": round(float(p), 6), "flagged": bool(p >= thr)}
        if show_text:
            row["text"] = text
        typer.echo(json.dumps(row))


@app.command()
def report(
    runs: Annotated[Path, typer.Option(help="directory searched for */summary.json")] = Path("runs"),
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("runs/report.html"),
) -> None:
    """Assemble every run under RUNS into one HTML page: claims vs measured, and the figures."""
    from lmlab.report import build_report

    try:
        path, n = build_report(runs, out)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
        return
    typer.echo(f"report of {n} run(s): {path}")


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover - `python -m lmlab.cli ...`
    main()
