"""Command line: ``lmlab list | run STUDY | moderate TEXT... | report | cache ... | serve | route fit``.

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
    """--threads N: N threads for torch and for numpy's BLAS (threadpoolctl)."""
    from lmlab.studies.runner import set_threads

    set_threads(threads)


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
    nproc: Annotated[int, typer.Option(help="data-parallel training over N processes on this node (torchrun; "
                                            "gloo on CPU, NCCL on GPU): same global batch, rank 0 writes")] = 1,
) -> None:
    """Run a study: train, analyse, write figures and summary.json."""
    from lmlab.config import ConfigError
    from lmlab.lm import LMError
    from lmlab.studies.runner import default_out, make_config, resolve_study, run_device
    from lmlab.train import CheckpointError

    from lmlab.train import distributed

    if threads < 0:
        _fail(f"--threads must be >= 0 (0: torch's default), got {threads}")
        return
    if nproc < 1:
        _fail(f"--nproc must be >= 1, got {nproc}")
        return
    if nproc > 1 and not distributed.launched():
        raise typer.Exit(_torchrun(nproc))
    _set_threads(threads)
    scratch = None
    try:
        s = resolve_study(study)
        cfg = make_config(s, quick=quick, config_file=config, overrides=list(set_ or []), seed=seed, device=device,
                          progress=progress, model=model, rm=rm, data=data)
        out = out or default_out(study, quick, control, cfg.seed)
        if distributed.init_from_env(run_device(cfg)) and distributed.rank() != 0:
            # Ranks > 0 train their share (resuming from rank 0's checkpoints) and write their copy of the
            # study's files into out/.rank<r>, removed when the run ends well (kept for a resume otherwise).
            scratch = out = Path(out) / f".rank{distributed.rank()}"
        summary = s.run(cfg, out, quick=quick, resume=resume, control=control)
    except (ConfigError, CheckpointError, LMError) as e:
        _fail(str(e).strip("'\""))
        return
    finally:
        distributed.shutdown()
    if scratch is not None:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
        return
    typer.echo(f"{study}: {summary.to_dict()['n_pass']}/{len(summary.claims)} claims pass "
               f"({summary.seconds:.0f} s); summary: {Path(out) / 'summary.json'}")
    for c in summary.claims:
        typer.echo(f"  [{c.status:>14s}] {c.id}: paper {json.dumps(c.paper_value)} | ours {json.dumps(c.measured)}")


def _torchrun(nproc: int) -> int:
    """Re-launch this command as ``torchrun --standalone --nproc-per-node N -m lmlab ...`` without --nproc."""
    from torch.distributed.run import main as torchrun

    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            args.append(a)
    try:
        torchrun(["--standalone", "--nproc-per-node", str(nproc), "-m", "lmlab", *args])
    except Exception as e:  # torchrun raises ChildFailedError after printing each rank's error
        typer.echo(f"error: a training process failed ({type(e).__name__}); see the lines above", err=True)
        return 1
    return 0


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


@app.command()
def sweep(
    study: Annotated[str, typer.Argument(help="study name (see `lmlab list`) or module:Class")],
    seeds: Annotated[str, typer.Option(help="seeds: 0-9, 0,3,5 or 0-4,10-12")] = "0-4",
    quick: Annotated[bool, typer.Option("--quick", help="the study's documented smaller variant")] = False,
    out: Annotated[Optional[Path], typer.Option(help="sweep directory (default runs/sweep-STUDY[-quick]); "
                                                     "rerunning with the same options resumes it")] = None,
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="KEY=V1,V2,...: one trial per value and "
                                                      "seed (repeat for a grid), e.g. --grid train.lr=1e-3,3e-3")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override for every trial, as in `lmlab run`")] = None,
    config: Annotated[Optional[Path], typer.Option(help="JSON config file (the study's full config)")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda (default: cuda when --gpus-per-trial > 0)")] = None,
    control: Annotated[bool, typer.Option("--control", help="the negative control of every trial")] = False,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 "
                                                        "(default: start a local instance)")] = None,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs per trial; torch and BLAS threads follow it")] = 1.0,
    gpus_per_trial: Annotated[float, typer.Option(help="GPUs per trial (fractions share a GPU)")] = 0.0,
    num_cpus: Annotated[Optional[int], typer.Option(help="CPUs of the local Ray instance (default: all cores)")] = None,
    holds_share: Annotated[float, typer.Option(help="a claim holds when it passes on at least this share of "
                                                    "seeds")] = 0.8,
    max_failures: Annotated[int, typer.Option(help="retries of a failed trial within this run")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar over trials")] = True,
) -> None:
    """Run a study over seeds (and a grid of overrides) as Ray Tune trials; judge each claim across seeds."""
    from lmlab.config import ConfigError
    from lmlab.sweep import SweepSpec, parse_grid, parse_seeds, run_sweep

    # (lmlab.train, for CheckpointError, imports torch: only when an error needs it, so that the sweep
    # checks configs while Ray starts in the background instead of after torch's import)
    try:
        spec = SweepSpec(study=study, seeds=parse_seeds(seeds), grid=parse_grid(grid), quick=quick,
                         overrides=list(set_ or []), control=control, device=device,
                         config_file=str(config.resolve()) if config else None, cpus_per_trial=cpus_per_trial,
                         gpus_per_trial=gpus_per_trial)
        name = study.rpartition(":")[2] if ":" in study else study
        out = out or Path("runs") / f"sweep-{name}{'-quick' if quick else ''}{'-control' if control else ''}"
        res = run_sweep(spec, out, address=address, holds_share=holds_share, max_failures=max_failures,
                        progress=progress, num_cpus=num_cpus)
    except Exception as e:
        from lmlab.train import CheckpointError

        if not isinstance(e, (ConfigError, CheckpointError, ValueError)):
            raise
        _fail(str(e).strip("'\""))
        return
    c = res.counts
    typer.echo(f"sweep {study}: {c['n_done']}/{c['n_trials']} trials done, {c['n_errors']} failed, "
               f"{c['n_pending']} pending; table {res.out / 'sweep.parquet'}, summary {res.out / 'sweep-summary.json'}")
    for point in res.summary["points"]:
        label = " ".join(f"{k}={v}" for k, v in point["grid"].items())
        if label:
            typer.echo(f"{label}:")
        for cid, a in point["claims"].items():
            rate = "-" if a["pass_rate"] is None else f"{a['pass_rate']:.0%}"
            typer.echo(f"  [{'holds' if a['holds'] else 'does not hold':>13s}] {cid}: passes {a['n_pass']}/"
                       f"{a['n_runs'] + a['n_errors']} ({rate}), mean {a['measured_mean']}, paper {json.dumps(a['paper_value'])}")
    if c["n_errors"] or c["n_pending"]:
        typer.echo("rerun the same command to resume: finished trials are kept, the rest run again")
    if c["n_errors"] or c["n_pending"]:  # an interrupted sweep is not a finished one: scripts must see it
        raise typer.Exit(1)
# -- lmlab cache ---------------------------------------------------------------------------------------------
cache_app = typer.Typer(no_args_is_help=True, help="A semantic prompt cache on disk: stats, get, put, export, "
                                                    "import, purge.")
app.add_typer(cache_app, name="cache")

_Store = Annotated[Path, typer.Option("--store", help="cache directory (holds cache.sqlite and index/)")]
_Emb = Annotated[str, typer.Option("--embedder", help="minilm (all-MiniLM-L6-v2 wheel), hashing, or a "
                                                      "sentence-transformers directory (e.g. runs/.../tuned-bce)")]
_NsOpt = Annotated[Optional[str], typer.Option("--namespace", help="a namespace name or key (see `cache stats`)")]
_Model = Annotated[Optional[str], typer.Option("--model", help="build the namespace from model + params + system + tenant")]
_Param = Annotated[Optional[list[str]], typer.Option("--param", help="sampling parameter k=v (repeat)")]
_System = Annotated[str, typer.Option("--system", help="system prompt (with --model)")]
_Tenant = Annotated[str, typer.Option("--tenant", help="tenant (with --model)")]


def _cache_embedder(spec: str):  # noqa: ANN202
    from lmlab.cache import HashingEmbedder, load_st_embedder

    if spec == "hashing":
        return HashingEmbedder(256)
    return load_st_embedder(None if spec == "minilm" else spec)


def _namespace(namespace: Optional[str], model: Optional[str], param: Optional[list[str]], system: str, tenant: str):  # noqa: ANN202
    from lmlab.cache import CacheError, Namespace

    if model is not None:
        params = {}
        for kv in param or []:
            k, sep, v = kv.partition("=")
            if not sep:
                raise CacheError(f"--param {kv!r}: write it as key=value")
            try:
                params[k] = json.loads(v)
            except json.JSONDecodeError:
                params[k] = v
        return Namespace(model, params, system, tenant)
    if namespace is None:
        raise CacheError("namespace: pass --namespace NAME or --model (with --param/--system/--tenant)")
    return namespace


def _cache_call(fn):  # noqa: ANN001, ANN202
    from lmlab.cache import CacheError
    from lmlab.lm import LMError

    try:
        return fn()
    except (CacheError, LMError) as e:
        _fail(str(e).strip("'\""))


@cache_app.command("stats")
def cache_stats(store: _Store) -> None:
    """Entries per namespace, embedder, size on disk (JSON)."""
    from lmlab.cache.store import open_store

    def go() -> None:
        with open_store(store) as c:
            typer.echo(json.dumps(c.stats(), indent=2))

    _cache_call(go)


@cache_app.command("get")
def cache_get(prompt: Annotated[str, typer.Argument(help="the prompt")], store: _Store, embedder: _Emb = "minilm",
              threshold: Annotated[float, typer.Option(help="serve when cosine similarity >= this")] = 0.9,
              namespace: _NsOpt = None, model: _Model = None, param: _Param = None, system: _System = "",
              tenant: _Tenant = "default") -> None:
    """Look a prompt up: one JSON line (hit, similarity, response, matched prompt); exit code 1 on a miss."""
    from lmlab.cache import SemanticCache

    def go() -> int:
        ns = _namespace(namespace, model, param, system, tenant)
        with SemanticCache(_cache_embedder(embedder), store, threshold=threshold) as c:
            h = c.get(prompt, ns)
        typer.echo(json.dumps({"hit": h is not None} if h is None else
                              {"hit": True, "exact": h.exact, "similarity": round(h.similarity, 6),
                               "response": h.response, "matched_prompt": h.prompt}))
        return 0 if h is not None else 1

    rc = _cache_call(go)
    if rc:
        raise typer.Exit(rc)


@cache_app.command("put")
def cache_put(prompt: Annotated[str, typer.Argument(help="the prompt")],
              response: Annotated[str, typer.Argument(help="the response to cache")], store: _Store,
              embedder: _Emb = "minilm", namespace: _NsOpt = None, model: _Model = None, param: _Param = None,
              system: _System = "", tenant: _Tenant = "default") -> None:
    """Store a response; prints the entry id after the commit."""
    from lmlab.cache import SemanticCache

    def go() -> None:
        ns = _namespace(namespace, model, param, system, tenant)
        with SemanticCache(_cache_embedder(embedder), store) as c:
            typer.echo(json.dumps({"id": c.put(prompt, response, ns)}))

    _cache_call(go)


@cache_app.command("export")
def cache_export(store: _Store, out: Annotated[Path, typer.Option(help="JSONL file to write")]) -> None:
    """Every entry as one JSON line (namespace spec, prompt, response, times; no vectors)."""
    from lmlab.cache.store import open_store
    from lmlab.io import atomic_path

    def go() -> None:
        with open_store(store) as c, atomic_path(out) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                n = 0
                for row in c.export():
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    n += 1
        typer.echo(f"exported {n} entries to {out}")

    _cache_call(go)


@cache_app.command("import")
def cache_import(file: Annotated[Path, typer.Argument(help="JSONL from `lmlab cache export`")], store: _Store,
                 embedder: _Emb = "minilm") -> None:
    """Re-embed and store every exported entry (works across embedders)."""
    from lmlab.cache import CacheError, SemanticCache

    def go() -> None:
        if not file.exists():
            raise CacheError(f"file: {file} does not exist")
        rows = []
        for i, line in enumerate(file.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise CacheError(f"file: {file} line {i + 1} is not JSON; use a file from `lmlab cache export`") from None
        with SemanticCache(_cache_embedder(embedder), store) as c:
            n = c.import_rows(rows)
        typer.echo(f"imported {n} entries into {store}")

    _cache_call(go)


@cache_app.command("purge")
def cache_purge(store: _Store, namespace: _NsOpt = None, model: _Model = None, param: _Param = None,
                system: _System = "", tenant: _Tenant = "default") -> None:
    """Delete one namespace and all its entries."""
    from lmlab.cache.store import open_store

    def go() -> None:
        ns = _namespace(namespace, model, param, system, tenant)
        with open_store(store) as c:
            n = c.purge(ns)
        typer.echo(f"purged {n} entries")

    _cache_call(go)


@app.command()
def redteam(
    target: Annotated[str, typer.Option(help="what to attack: default (the embedded SmolLM2), a local model path, "
                                             "one OpenAI-compatible URL, e.g. http://127.0.0.1:8000/v1#model, or "
                                             "gateway (`lmlab serve` subprocesses on 127.0.0.1, one per --defence "
                                             "variant); nothing is sent anywhere else")] = "default",
    suite: Annotated[Optional[list[str]], typer.Option("--suite", help="attack suite (repeat): injection, leakage, "
                                                       "jailbreak, guard-cost, cache-poison")] = None,
    out: Annotated[Path, typer.Option(help="output directory: attempts-*.jsonl, table.md, summary.json, "
                                           "attack-success.png")] = Path("runs/redteam"),
    defence: Annotated[Optional[list[str]], typer.Option("--defence", help="harness defence (repeat; stack with "
                                                         "'+'): none, spotlight, sandwich, filter, output-guard; with "
                                                         "--target gateway a gateway variant: plain, guard, spotlight, "
                                                         "injection-block, shared-tenant")] = None,
    n: Annotated[int, typer.Option(help="items per suite (each with its matched control)")] = 20,
    seed: Annotated[int, typer.Option(help="attack generator seed")] = 0,
    api_key: Annotated[Optional[str], typer.Option(envvar="LMLAB_TARGET_API_KEY",
                                                   help="API key sent to the target URL only")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="reply length")] = 48,
    embedder: Annotated[str, typer.Option(help="cache-poison: hashing, minilm, random or a sentence-transformers "
                                                "directory")] = "hashing",
    gateway_model: Annotated[str, typer.Option(help="--target gateway: the backend's load_lm spec (or 'fake', an "
                                                     "echo backend)")] = "default",
    guard_detector: Annotated[str, typer.Option(help="--target gateway: the guard variant's detector (.npz or "
                                                      "module:attr; default: a TF-IDF detector trained here)")] = "",
    cache_threshold: Annotated[float, typer.Option(help="--target gateway: the gateway cache's threshold")] = 0.9,
    threads: Annotated[int, typer.Option(help="PyTorch CPU threads for a local model (0: default)")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")] = True,
) -> None:
    """Red-team a target: run attack suites, write every attempt (JSONL), a summary table and a figure."""
    from lmlab.config import ConfigError
    from lmlab.lm import LMError
    from lmlab.security.redteam import redteam as run_redteam

    if n < 1:
        _fail(f"--n must be >= 1, got {n}")
        return
    _set_threads(threads)
    try:
        s = run_redteam(target, suite or ["injection"], out, defences=defence or ["none"], n=n, seed=seed,
                        api_key=api_key, max_new_tokens=max_new_tokens, embedder=embedder, progress=progress,
                        gateway_model=gateway_model, guard_detector=guard_detector, cache_threshold=cache_threshold)
    except (ConfigError, LMError) as e:
        _fail(str(e).strip("'\""))
        return
    typer.echo((Path(out) / "table.md").read_text(encoding="utf-8"))
    typer.echo(f"target {s['target']}; attempts, summary.json and figure in {out}")


@app.command()
def serve(
    config: Annotated[Optional[Path], typer.Option("--config", help="gateway TOML (or JSON) file; defaults without it")] = None,
    host: Annotated[Optional[str], typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default 8000)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="uvicorn worker processes (they share the cache and metrics)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a config field, e.g. cache.enabled=false")] = None,
    hash_key: Annotated[Optional[str], typer.Option("--hash-key", help="print the sha256 of an API key for "
                                                                      "[[auth.keys]] and exit")] = None,
    show_config: Annotated[bool, typer.Option("--show-config", help="print the resolved config as JSON and exit")] = False,
) -> None:
    """Run the OpenAI-compatible gateway (guard, semantic cache, router, backends). Docs: docs/serve.md."""
    from lmlab.config import ConfigError
    from lmlab.serve.config import GatewayConfig
    from lmlab.serve.config import hash_key as _hash

    if hash_key is not None:
        typer.echo(_hash(hash_key))
        return
    try:
        cfg = GatewayConfig.load(config, list(set_ or []))
        srv = {k: v for k, v in (("host", host), ("port", port), ("workers", workers)) if v is not None}
        if srv:
            cfg = cfg.replace(server=cfg.server.replace(**srv))
    except ConfigError as e:
        _fail(str(e))
        return
    if show_config:
        typer.echo(json.dumps(cfg.to_dict(), indent=1))
        return
    from lmlab.serve.run import run_server

    try:
        run_server(cfg)
    except ConfigError as e:
        _fail(str(e))


route_app = typer.Typer(no_args_is_help=True, help="Routing for `lmlab serve`: build a correctness matrix for its backends.")
app.add_typer(route_app, name="route")


@route_app.command("fit")
def route_fit(
    out: Annotated[Path, typer.Option(help="where to write the matrix (.npz and .json); set router.matrix to it")],
    config: Annotated[Optional[Path], typer.Option("--config", help="the gateway config whose backends answer")] = None,
    backend: Annotated[Optional[list[str]], typer.Option("--backend", help="only these backends (repeat)")] = None,
    max_tokens: Annotated[int, typer.Option(help="answer length per question")] = 16,
    limit: Annotated[Optional[int], typer.Option(help="only the first N questions (a quick look)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a config field")] = None,
) -> None:
    """Ask each backend the bundled verifiable questions (capitals, currencies, languages of 60 countries) and save
    who answered what correctly: the correctness matrix `router.matrix` fits the EmbedLLM router on."""
    from lmlab.config import ConfigError
    from lmlab.serve.config import GatewayConfig
    from lmlab.serve.fit import fit_matrix

    try:
        cfg = GatewayConfig.load(config, list(set_ or []))
        summary = fit_matrix(cfg, out, backend, max_tokens=max_tokens, limit=limit)
    except ConfigError as e:
        _fail(str(e))
        return
    typer.echo(json.dumps(summary, indent=1))


# -- lmlab selfimprove ---------------------------------------------------------------------------------------
selfimprove_app = typer.Typer(no_args_is_help=True, help="Self-improvement tools (DPO through TRL): safety-tune.")
app.add_typer(selfimprove_app, name="selfimprove")


@selfimprove_app.command("safety-tune")
def selfimprove_safety_tune(
    out: Annotated[Path, typer.Option(help="output directory (the tuned model goes to OUT/model)")] = Path("runs/safety-tuned"),
    model: Annotated[str, typer.Option(help="the model to tune: default (SmolLM2), a .gguf or an HF directory")] = "default",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a config field, e.g. n_train=128")] = None,
    threads: Annotated[int, typer.Option(help="PyTorch CPU threads (0: torch's default)")] = 0,
) -> None:
    """DPO-tune a model on the bundled HH-RLHF harmless pairs (held-out split kept), for rerunning MULI on it."""
    from lmlab.config import ConfigError, apply_overrides
    from lmlab.lm import LMError

    _set_threads(threads)
    try:
        from lmlab.selfimprove.safety import SafetyTuneConfig, main_json, safety_tune

        cfg = apply_overrides(SafetyTuneConfig(), [f"lm.model={model}", *(set_ or [])])
        typer.echo(main_json(safety_tune(cfg, out)))
    except (ConfigError, LMError) as e:
        _fail(str(e))


@selfimprove_app.command("refusal")
def selfimprove_refusal(
    model: Annotated[list[str], typer.Option(help="a model spec, repeatable; the first is the reference (e.g. default, "
                                             "then runs/safety-tuned/model)")],
    label: Annotated[Optional[list[str]], typer.Option(help="a name per --model (e.g. base, tuned)")] = None,
    out: Annotated[Path, typer.Option(help="output directory (summary.json, responses-<label>.jsonl; resumable)")] = Path("runs/refusal"),
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a config field, e.g. n_per_class=150")] = None,
    threads: Annotated[int, typer.Option(help="PyTorch CPU threads (0: torch's default)")] = 0,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bar")] = False,
) -> None:
    """Refusal rates on the MULI data's held-out flagged and benign prompts, several models side by side (greedy
    responses judged by the GCG refusal-string matcher)."""
    from lmlab.config import ConfigError, apply_overrides
    from lmlab.lm import LMError

    _set_threads(threads)
    try:
        from lmlab.moderation.refusal import RefusalConfig, refusal_compare, table

        cfg = apply_overrides(RefusalConfig(models=tuple(model), labels=tuple(label or ()), progress=not no_progress),
                              list(set_ or []))
        s = refusal_compare(cfg, out)
        typer.echo(table(s))
        typer.echo(table(s, "prefix"))
    except (ConfigError, LMError) as e:
        _fail(str(e))


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover - `python -m lmlab.cli ...`
    main()
