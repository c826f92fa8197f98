"""``lmlab sweep``: a study over seeds and a grid of overrides, each (seed, grid point) one Ray Tune trial.

Ray Tune schedules the trials (per-trial CPU/GPU resources), records their failures without stopping
the others, and restores an interrupted sweep (``Tuner.restore``). Each trial runs the study, exactly
as ``lmlab run`` would with the same options, into its own run directory under the sweep directory::

    DIR/sweep.json            what was asked (study, seeds, grid, options); a re-run must ask the same
    DIR/runs/seed3-train.lr=0.001/   one run directory per trial (config.json, checkpoint.pt, summary.json)
    DIR/sweep.parquet         one row per trial and claim, rewritten as each trial finishes
    DIR/sweep-summary.json    per grid point and claim: pass rate, mean and bootstrap CI, paper value, holds
    DIR/errors/<trial>.txt    the traceback of a failed trial (removed when a re-run succeeds)
    DIR/tune/                 Ray Tune's experiment state

Re-running the same command resumes: trials that finished are not run again (Tune's restore skips
them, and a trial whose run directory holds a finished summary returns it at once), interrupted
ones restart and the study resumes from the checkpoint in its run directory, failed ones are tried again.

Across seeds a claim *holds* when it passes on at least ``holds_share`` of the trials of that grid
point (default :data:`lmlab.claims.HOLDS_SHARE`); a trial that raised counts as not passing.

>>> parse_seeds("0-2,7")
[0, 1, 2, 7]
>>> parse_grid(["train.lr=1e-3,3e-3"])
{'train.lr': ['1e-3', '3e-3']}
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from lmlab.claims import HOLDS_SHARE, Summary, aggregate, finite
from lmlab.config import ConfigError
from lmlab.io import atomic_path, atomic_write_text, fingerprint

log = logging.getLogger("lmlab.sweep")

#: the object store of a local Ray instance: trials pass only small dicts through it
OBJECT_STORE_BYTES = 100 * 2**20
#: file in a trial's run directory that marks it finished (what the sweep reads back)
DONE_FILE = "sweep-trial.json"
#: where a sweep's wall time went (written by every call; see :func:`breakdown`)
TIMINGS_FILE = "sweep-timings.json"
TABLE_COLUMNS = ["study", "trial", "seed", "claim_id", "status", "measured", "measured_json", "paper_value",
                 "tolerance", "error", "seconds", "run_dir"]


# -- what is asked ------------------------------------------------------------------------------------------
def parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"0,3,5"`` or ``"0-4,10-12"`` -> sorted unique seeds."""
    seeds: set[int] = set()
    for part in (p.strip() for p in str(text).split(",")):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ConfigError(f"--seeds: {part!r} is not a seed or a range; write e.g. 0-9 or 0,3,5")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ConfigError(f"--seeds: range {part!r} runs backwards; write {hi}-{lo}")
        seeds.update(range(lo, hi + 1))
    return sorted(seeds)


def parse_grid(items: list[str] | None) -> dict[str, list[str]]:
    """``["train.lr=1e-3,3e-3", "model.d_model=32,64"]`` -> ``{key: [values]}`` (values as written)."""
    grid: dict[str, list[str]] = {}
    for item in items or []:
        key, eq, values = item.partition("=")
        key = key.strip()
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not eq or not key or not vals:
            raise ConfigError(f"--grid {item!r}: write KEY=V1,V2,... (e.g. --grid train.lr=1e-3,3e-3)")
        if key in grid:
            raise ConfigError(f"--grid: key '{key}' is given twice; list all its values in one --grid")
        if key == "seed":
            raise ConfigError("--grid: 'seed' is swept by --seeds, not --grid")
        grid[key] = vals
    return grid


def _value(text: str) -> Any:
    """A grid value for the table: a number when it reads as one, else the text."""
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        return text
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else text


@dataclass(frozen=True)
class Trial:
    name: str
    seed: int
    point: dict[str, str]  # grid key -> value as written


@dataclass
class SweepSpec:
    """What a sweep runs; ``sweep.json`` in the sweep directory. The resource fields may change on a re-run."""

    study: str
    seeds: list[int]
    grid: dict[str, list[str]] = field(default_factory=dict)
    quick: bool = False
    overrides: list[str] = field(default_factory=list)
    control: bool = False
    device: str | None = None
    config_file: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    RESOURCE_FIELDS = ("cpus_per_trial", "gpus_per_trial")

    def points(self) -> list[dict[str, str]]:
        keys = list(self.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def trials(self) -> list[Trial]:
        out = []
        for point in self.points():
            for seed in self.seeds:
                tag = "".join(f"-{k}={v}" for k, v in point.items())
                out.append(Trial(re.sub(r"[^A-Za-z0-9._=+-]", "_", f"seed{seed}{tag}"), seed, point))
        return out

    def essentials(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in self.RESOURCE_FIELDS}

    def threads(self) -> int:
        return max(1, int(self.cpus_per_trial))


def trial_config(spec: SweepSpec, trial: Trial, progress: bool = False) -> Any:
    """The study and config that ``lmlab run`` builds from the sweep's options for this trial."""
    from lmlab.studies.runner import make_config, resolve_study

    study = resolve_study(spec.study)
    device = spec.device or ("cuda" if spec.gpus_per_trial > 0 else None)
    overrides = list(spec.overrides) + [f"{k}={v}" for k, v in trial.point.items()]
    cfg = make_config(study, quick=spec.quick, config_file=spec.config_file, overrides=overrides, seed=trial.seed,
                      device=device, progress=progress)
    return study, cfg


def check_configs(spec: SweepSpec) -> None:
    """Build every trial's config (as the trial will) and check its model's capabilities (as ``lmlab run``
    does before writing anything); raises the first error (``ConfigError``: one line)."""
    from lmlab.lm.base import LMError

    for t in spec.trials():
        study, cfg = trial_config(spec, t)
        try:
            study.check_lm(cfg)  # e.g. an endpoint for a study that trains the model: fail before Ray starts
        except LMError as e:
            raise ConfigError(str(e)) from None


class _ConfigCheck:
    """:func:`check_configs` in a child process, started at once and read by :meth:`result`.

    Building a config imports the study and so torch (seconds of CPU), which the sweep's own process does not
    need otherwise: in a child it runs on another core while this process imports Tune and Ray starts, and
    the driver never loads torch. A bad config still fails in one line before any trial runs. The child gets
    this process's ``sys.path``, so it imports the same lmlab and the same ``module:Class`` study. When the
    study's module is already imported here (a test, a notebook), the check runs here: it costs nothing then."""

    def __init__(self, spec: SweepSpec):
        import subprocess

        self._spec_obj: SweepSpec | None = None
        module = study_module(spec.study)
        if module and module in sys.modules:
            self._spec_obj, self._proc = spec, None
            return
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._proc = subprocess.Popen([sys.executable, "-c", "import lmlab.sweep as s; s._check_configs_child()"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env)
        self._spec = json.dumps(asdict(spec))

    def result(self) -> None:
        if self._proc is None:
            check_configs(self._spec_obj)
            return
        out, err = self._proc.communicate(self._spec)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        verdict = json.loads(lines[-1]) if lines else {}
        if self._proc.returncode == 0 and verdict.get("ok"):
            return
        message = verdict.get("message")
        if message is None:  # not an error a config makes: show the child's traceback
            raise RuntimeError(f"checking the trials' configs failed (exit {self._proc.returncode}):\n{err.strip()}")
        raise (ValueError if verdict.get("kind") == "ValueError" else ConfigError)(message)

    def kill(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()


def _check_configs_child() -> None:
    """The child of :class:`_ConfigCheck`: the spec as JSON on stdin, one JSON verdict line on stdout."""
    spec = SweepSpec(**json.loads(sys.stdin.read()))
    try:
        check_configs(spec)
    except (ConfigError, ValueError) as e:
        kind = "ConfigError" if isinstance(e, ConfigError) else "ValueError"
        print(json.dumps({"ok": False, "kind": kind, "message": str(e).strip("'\"")}), flush=True)
        sys.exit(3)
    print(json.dumps({"ok": True}), flush=True)


# -- one trial (runs in a Ray worker) -------------------------------------------------------------------------
def run_trial(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Tune function trainable: one (seed, grid point) of the study, into its own run directory.
    ``config["job"]`` holds the sweep's spec, the trial and its run directory."""
    entered = time.time()
    job = config["job"]
    spec, trial, run_dir = SweepSpec(**job["spec"]), Trial(**job["trial"]), Path(job["run_dir"])
    threads = spec.threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    from lmlab.studies.runner import set_threads

    set_threads(threads)  # torch and BLAS: this trial's CPU share, not the whole machine
    done = _read_done(run_dir)
    stale = None if done is None else code_changes(done.get("code"))
    if stale:
        # a finished trial is kept only while the lmlab modules it ran are unchanged; otherwise the study runs
        # again and its stages reuse what their own fingerprints still allow
        log.warning("%s: re-running: %s", trial.name, stale)
        done = None
    if done is None:
        study, cfg = trial_config(spec, trial)
        study_start = time.time()
        summary = study.run(cfg, run_dir, quick=spec.quick, resume=True, control=spec.control)
        done = {"trial": trial.name, "seed": trial.seed, "point": trial.point, "seconds": summary.seconds,
                "n_pass": summary.counts()["n_pass"], "n_claims": len(summary.claims), "code": loaded_code(),
                # wall-clock times (seconds since the epoch) for the sweep's overhead breakdown
                "timing": {"process_start": _process_start(), "entered": entered, "study_start": study_start,
                           "study_end": time.time()}}
        atomic_write_text(run_dir / DONE_FILE, json.dumps(done) + "\n")
    result = {"n_pass": done["n_pass"], "n_claims": done["n_claims"], "study_seconds": done["seconds"]}
    try:
        from ray import tune

        tune.report(result)
    except Exception:  # called outside Tune (tests, a debugger): the return value is the result
        pass
    return result


def loaded_code() -> dict[str, str]:
    """``{file: hash of its bytes}`` for every lmlab module loaded in this process: the code a finished trial
    ran (read after the study, so modules it imports lazily are in). A trial is kept while these files are
    unchanged, so editing the gateway does not re-run a two-hop sweep, and editing anything the study loaded
    does. The bytes, not the syntax trees (parsing them takes seconds per trial), so a comment edit in one of
    these files re-runs the trial too; its stages then reuse whatever their own code fingerprints allow."""
    root = Path(__file__).resolve().parent
    out = {}
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if not (name == "lmlab" or name.startswith("lmlab.")) or not f:
            continue
        p = Path(f).resolve()
        if p.suffix == ".py" and p.is_relative_to(root):
            out[p.relative_to(root).as_posix()] = fingerprint(p.read_bytes())
    return dict(sorted(out.items()))


def code_changes(recorded: Any) -> str | None:
    """None while every file in ``recorded`` (from :func:`loaded_code`) still hashes the same; otherwise why not,
    in a few words (``"lmlab/studies/two_hop.py changed"``)."""
    if not isinstance(recorded, dict) or not recorded:
        return "it finished without a per-module code record (an older lmlab)"
    root = Path(__file__).resolve().parent
    changed = [rel for rel, h in recorded.items()
               if not (root / rel).is_file() or fingerprint((root / rel).read_bytes()) != h]
    if not changed:
        return None
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return "the code changed since it finished: " + ", ".join(f"lmlab/{c}" for c in changed[:3]) + more


def _process_start() -> float | None:
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # psutil comes with Ray; without it the breakdown leaves this out
        return None


def _read_done(run_dir: Path) -> dict[str, Any] | None:
    try:
        done = json.loads((run_dir / DONE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return done if (run_dir / "summary.json").exists() else None


# -- the sweep's table and summary (the driver) ------------------------------------------------------------
class SweepState:
    """Reads the trials' run directories and writes ``sweep.parquet`` and ``sweep-summary.json``."""

    def __init__(self, spec: SweepSpec, out: Path, holds_share: float = HOLDS_SHARE):
        self.spec, self.out, self.holds_share = spec, out, holds_share
        self.trials = spec.trials()
        self._summaries: dict[str, Summary] = {}

    def run_dir(self, trial: Trial) -> Path:
        return self.out / "runs" / trial.name

    def error_path(self, trial: Trial) -> Path:
        return self.out / "errors" / f"{trial.name}.txt"

    def summary(self, trial: Trial) -> Summary | None:
        """The trial's finished summary, if it finished with the code that is here now (else None: it runs again)."""
        if trial.name not in self._summaries:
            done = _read_done(self.run_dir(trial))
            if done is not None and code_changes(done.get("code")) is None:
                self._summaries[trial.name] = Summary.read(self.run_dir(trial))
        return self._summaries.get(trial.name)

    def stale(self) -> dict[str, str]:
        """``{trial: why}`` for the finished trials whose lmlab modules changed since they ran."""
        out = {}
        for t in self.trials:
            done = _read_done(self.run_dir(t))
            why = None if done is None else code_changes(done.get("code"))
            if why:
                out[t.name] = why
        return out

    def error(self, trial: Trial) -> str | None:
        p = self.error_path(trial)
        return p.read_text() if p.exists() else None

    def record_error(self, trial: Trial, text: str) -> None:
        p = self.error_path(trial)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p, text)

    def clear_error(self, trial: Trial) -> None:
        self.error_path(trial).unlink(missing_ok=True)

    def by_name(self, name: str) -> Trial:
        return next(t for t in self.trials if t.name == name)

    def counts(self) -> dict[str, int]:
        done = sum(self.summary(t) is not None for t in self.trials)
        errors = sum(self.summary(t) is None and self.error(t) is not None for t in self.trials)
        return {"n_trials": len(self.trials), "n_done": done, "n_errors": errors,
                "n_pending": len(self.trials) - done - errors}

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for t in self.trials:
            base = {"study": self.spec.study, "trial": t.name, "seed": t.seed,
                    **{k: _value(v) for k, v in t.point.items()},
                    "run_dir": str(self.run_dir(t).relative_to(self.out))}
            s = self.summary(t)
            if s is not None:
                for c in s.claims:
                    measured = c.measured if isinstance(c.measured, (int, float)) and not isinstance(c.measured, bool) else None
                    rows.append({**base, "claim_id": c.id, "status": c.status, "measured": measured,
                                 "measured_json": json.dumps(finite(c.measured)),
                                 "paper_value": json.dumps(finite(c.paper_value)), "tolerance": c.tolerance,
                                 "error": None, "seconds": s.seconds})
            elif (err := self.error(t)) is not None:
                rows.append({**base, "claim_id": None, "status": "error", "measured": None, "measured_json": None,
                             "paper_value": None, "tolerance": None, "error": _last_line(err), "seconds": None})
        return rows

    def write_table(self) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        keys = list(self.spec.grid)
        rows = self.rows()
        columns = TABLE_COLUMNS[:3] + keys + TABLE_COLUMNS[3:]
        types = {c: pa.string() for c in columns} | {"seed": pa.int64(), "measured": pa.float64(),
                                                      "seconds": pa.float64()}
        data: dict[str, list[Any]] = {c: [r.get(c) for r in rows] for c in columns}
        for k in keys:  # one type per grid column: numbers when every value of the key is one, else text
            if all(isinstance(_value(v), (int, float)) for v in self.spec.grid[k]):
                types[k] = pa.float64()
            else:
                data[k] = [str(v) for v in data[k]]
        table = pa.table({c: pa.array(data[c], type=types[c]) for c in columns})
        path = self.out / "sweep.parquet"
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return path

    def sweep_summary(self) -> dict[str, Any]:
        points = []
        for point in self.spec.points():
            trials = [t for t in self.trials if t.point == point]
            summaries = [s for s in (self.summary(t) for t in trials) if s is not None]
            errors = [{"trial": t.name, "seed": t.seed, "error": _last_line(e)} for t in trials
                      if self.summary(t) is None and (e := self.error(t)) is not None]
            points.append({"grid": {k: _value(v) for k, v in point.items()}, "n_trials": len(trials),
                           "n_done": len(summaries), "n_errors": len(errors), "errors": errors,
                           "claims": aggregate(summaries, self.holds_share, n_errors=len(errors))})
        return finite({"kind": "lmlab-sweep", "study": self.spec.study, "spec": asdict(self.spec),
                       "holds_share": self.holds_share, **self.counts(),
                       "grid": {k: [_value(v) for v in vs] for k, vs in self.spec.grid.items()}, "points": points})

    def write(self) -> dict[str, Any]:
        """Write the table and ``sweep-summary.json``; returns the summary."""
        self.write_table()
        summary = self.sweep_summary()
        atomic_write_text(self.out / "sweep-summary.json", json.dumps(summary, indent=2) + "\n")
        return summary


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


# -- Ray ---------------------------------------------------------------------------------------------------
def ray_env(address: str | None = None) -> None:
    """Environment for Ray, set before it is imported (Ray reads these at import)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no per-trial CSV/TensorBoard files
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's older reporter is silent at verbose=0; ours is the bar
    # Ray lowers its workers' priority by 15 (nice 15); a trial is the sweep's real work, so it keeps the
    # priority `lmlab sweep` was started with, as `lmlab run` does (on a busy machine the trials otherwise
    # crawl behind everything else). Ray reads this when a local instance starts its workers.
    os.environ.setdefault("RAY_worker_niceness", "0")
    if address is None or address.split("://")[-1].startswith(("127.", "localhost")):
        # On Linux Ray resolves 127.0.0.1 to the machine's outward address (for multi-node clusters) and
        # binds its servers there; this switch keeps a single-node instance on the loopback interface.
        # Ray reads it when it is imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


#: environment variable naming the modules a local instance's workers import as they start
PRELOAD_ENV = "LMLAB_SWEEP_PRELOAD"


def study_module(study: str) -> str | None:
    """The module that holds a study (registry name or ``module:Class``), found without importing it."""
    from lmlab.studies import STUDIES

    target = STUDIES.entries.get(study) or (study if ":" in study else None)
    return target.partition(":")[0] if target else None


def warm_worker() -> None:
    """Ray's ``worker_process_setup_hook`` for a local instance: each worker imports what every trial
    needs (Tune's function trainable, torch, the study) as soon as Ray starts it, while the driver is
    still checking configs and setting up Tune, instead of after the trial has been placed on it."""
    import importlib

    for name in ["ray.tune.trainable.function_trainable", "torch", "lmlab.studies.runner",
                 *os.environ.get(PRELOAD_ENV, "").split(",")]:
        if name:
            try:
                importlib.import_module(name)
            except Exception:  # the trial imports it again and reports the real error
                pass


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
              preload: list[str] | None = None) -> bool:
    """Connect to Ray; with no address, start a local instance: usage stats off, no dashboard, every
    server bound to 127.0.0.1, a small object store. ``preload``: modules the local instance's workers
    import as they start (:func:`warm_worker`). Returns True when this call started Ray."""
    ray_env(address)
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                                  configure_logging=True)
    if address is None:
        runtime_env = None
        if preload is not None:
            # the local raylet and its workers inherit this process's environment
            os.environ[PRELOAD_ENV] = ",".join(preload)
            runtime_env = {"worker_process_setup_hook": "lmlab.sweep.warm_worker"}
        with _lean_head():
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=OBJECT_STORE_BYTES,
                     _node_ip_address="127.0.0.1", runtime_env=runtime_env, _system_config=_system_config(), **kwargs)
        ip = ray.util.get_node_ip_address()
        if not ip.startswith("127."):
            warnings.warn(f"the local Ray instance listens on {ip}, not 127.0.0.1: Ray was imported before "
                          "lmlab.sweep.ray_env() ran; call it first", stacklevel=2)
    else:
        _check_reachable(address)
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as e:
            raise ConfigError(f"--address {address}: could not connect to Ray ({str(e).splitlines()[0]}); check the "
                              "address, and if the cluster uses token authentication (Ray >= 2.59 turns it on for "
                              "local clusters) set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) "
                              "in lmlab's environment") from None
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) address must accept a TCP connection: Ray itself retries an unreachable
    address for minutes before it fails, so a typo would look like a hang. ``auto`` is left to Ray."""
    import socket

    hostport = address.split("://")[-1]
    host, sep, port = hostport.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"--address {address}: nothing answers there ({e.strerror or e}); start the cluster "
                          "(ray start --head) or give its GCS address (HOST:6379) or ray://HOST:10001") from None


#: set to 0 to start a local instance with all of Ray's head processes (see :func:`_lean_head`)
LEAN_ENV = "LMLAB_SWEEP_LEAN_RAY"


@contextlib.contextmanager
def _lean_head() -> Iterator[None]:
    """While ``ray.init`` starts a local instance, leave out three head processes a one-machine sweep never uses:
    the autoscaler monitor (a fixed local instance has nothing to scale), the log monitor (trials' output is
    not sent to the driver: ``log_to_driver=False``) and the API server (with ``include_dashboard=False`` Ray
    still starts it, for usage statistics, which are off, and the job/state APIs, which a sweep does not call).
    Each is a Python process that costs about a CPU-second to start, on the critical path of a short sweep.
    ``ray.init`` has no switch for them (``ray start --head`` has two, but its head outlives the sweep), so
    this sets the two ``RayParams`` fields Ray's own CLI sets and skips ``Node.start_api_server``, for the
    duration of the call only. If Ray's internals are not what this expects, Ray starts as usual.
    ``LMLAB_SWEEP_LEAN_RAY=0`` keeps Ray's defaults."""
    if os.environ.get(LEAN_ENV, "1") == "0":
        yield
        return
    try:
        import ray._private.node as ray_node
        import ray._private.parameter as ray_parameter

        params_cls, node_cls = ray_parameter.RayParams, ray_node.Node
        fields = inspect.signature(params_cls).parameters
        if not ({"no_monitor", "include_log_monitor"} <= set(fields) and hasattr(node_cls, "start_api_server")):
            raise AttributeError("Ray's head-node internals changed")
    except Exception:  # another Ray version: start it with its defaults
        yield
        return

    class LeanParams(params_cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kw: Any) -> None:
            kw.setdefault("no_monitor", True)
            kw.setdefault("include_log_monitor", False)
            super().__init__(*args, **kw)

    class LeanNode(node_cls):  # type: ignore[misc, valid-type]
        def start_api_server(self, *args: Any, **kw: Any) -> None:
            return None

    ray_parameter.RayParams, ray_node.Node = LeanParams, LeanNode
    try:
        yield
    finally:
        ray_parameter.RayParams, ray_node.Node = params_cls, node_cls


def _system_config() -> dict[str, Any]:
    # Ray starts one idle worker per CPU when the driver connects; Tune's trial actors do not run on them
    # (they get workers of their own, started when Tune places them), so on a small machine those idle
    # workers only take CPU from the driver and the trials. LMLAB_SWEEP_PRESTART=1 keeps Ray's default.
    if os.environ.get("LMLAB_SWEEP_PRESTART", "0") != "0":
        return {}
    return {"enable_worker_prestart": False, "prestart_worker_first_driver": False}


class _RayOwner:
    """Starts Ray in a background thread that lives until :meth:`stop`, and stops Ray
    from that same thread. A local instance's servers are started with Linux's parent-death signal,
    which fires when the *thread* that started them ends, so the thread must outlive the sweep (and
    when the process exits first, the kernel stops them)."""

    _stopping: list[_RayOwner] = []  # owners told to stop without waiting; the next sweep waits for them

    @classmethod
    def join_stopping(cls) -> None:
        while cls._stopping:
            cls._stopping.pop()._thread.join()

    def __init__(self, address: str | None, num_cpus: int | None, preload: list[str] | None):
        import threading

        self.started = False
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._error: BaseException | None = None
        self._ready, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, args=(address, num_cpus, preload), name="lmlab-ray",
                                        daemon=True)
        self._thread.start()

    def _run(self, address: str | None, num_cpus: int | None, preload: list[str] | None) -> None:
        try:
            self.started = start_ray(address, num_cpus=num_cpus, preload=preload)
        except BaseException as e:  # re-raised in the caller's thread by wait()
            self._error = e
        self.started_at = time.time()
        self._ready.set()
        if self._error is None:
            self._stop.wait()
            if self.started:
                import ray

                ray.shutdown()
        self.stopped_at = time.time()

    def wait(self) -> bool:
        """Wait for Ray; True when this owner started a local instance (and will stop it)."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self.started

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        if wait:
            self._thread.join()
        else:
            self._stopping.append(self)


_LIVE: dict[str, Any] = {}  # sweep dir -> (state, bar): the callback looks them up (Tune pickles callbacks)


def _callback_class() -> type:
    from ray.tune import Callback

    class SweepCallback(Callback):
        """Streams results into the sweep table and moves the progress bar as trials end."""

        def __init__(self, out: str):
            self.out = out

        def _finish(self, trial: Any, error: str | None) -> None:
            from lmlab.sweep import _LIVE  # the live module's (Tune pickles this class by value)

            live = _LIVE.get(self.out)
            if live is None:
                return
            state, bar = live
            t = state.by_name(trial.config["job"]["trial"]["name"])
            if error is None:
                state.clear_error(t)
            else:
                state.record_error(t, error)
                if bar is not None:
                    bar.write(f"trial {t.name} failed: {_last_line(error)}")
            state.write()
            if bar is not None:  # absolute: a restored sweep re-reports trials it had already counted
                c = state.counts()
                bar.n = c["n_done"] + c["n_errors"]
                bar.set_postfix(done=c["n_done"], failed=c["n_errors"], refresh=True)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finish(trial, None)
            _prefetch_report(trials, trial)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finish(trial, _trial_error_text(trial))
            _prefetch_report(trials, trial)

    return SweepCallback


def _prefetch_report(trials: list, ended: Any) -> None:
    """Once a trial has ended while others still run (a core is free), import what the sweep's figures need
    (matplotlib: about a CPU-second) in a background thread, instead of after the last trial."""
    from lmlab import sweep  # the live module (Tune pickles the callback by value)

    if sweep._PREFETCHED or not any(getattr(t, "status", None) in ("RUNNING", "PENDING") for t in trials
                                    if t is not ended):
        return
    import threading

    sweep._PREFETCHED = True
    threading.Thread(target=_import_report, name="lmlab-report-import", daemon=True).start()


_PREFETCHED = False


def _import_report() -> None:
    try:
        import lmlab.report  # noqa: F401

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except Exception:  # the figures import it again and report the real error
        pass


def _trial_name(trial: Any) -> str:
    return str(trial.config["job"]["trial"]["name"])


def _trial_error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None) or ""
    text = ""
    try:
        if path and Path(path).exists():
            text = Path(path).read_text()
    except OSError:
        pass
    text = text or str(getattr(trial, "error_msg", None) or "the trial failed (no error message was recorded)")
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # Ray colours the worker's name


@dataclass
class SweepOutcome:
    out: Path
    counts: dict[str, int]
    summary: dict[str, Any]
    resumed: bool
    before: dict[str, int]  # the counts when this call started
    timings: dict[str, Any] = field(default_factory=dict)  # where the wall time went (see breakdown)


def run_sweep(spec: SweepSpec, out: str | Path, *, address: str | None = None, holds_share: float = HOLDS_SHARE,
              max_failures: int = 0, progress: bool = True, num_cpus: int | None = None,
              max_concurrent: int | None = None) -> SweepOutcome:
    """Run (or resume) the sweep; see the module docstring. Configs are checked before any trial starts."""
    clock = {"start": time.time()}
    out = Path(out).resolve()
    if not spec.seeds:
        raise ConfigError("--seeds: no seeds given; write e.g. --seeds 0-4")
    if spec.cpus_per_trial <= 0 or spec.gpus_per_trial < 0:
        raise ConfigError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if not 0 < holds_share <= 1:
        raise ConfigError(f"--holds-share must be in (0, 1], got {holds_share}")
    # Every trial's config is checked in a child process (it imports the study and torch) while Ray starts
    # in a background thread and this thread imports Tune; a bad config still fails here, in one line,
    # before any trial runs (and the instance just started is stopped).
    ray_env(address)
    preload = [m for m in [study_module(spec.study)] if m]
    checker = _ConfigCheck(spec)
    import ray  # noqa: F401  (here, after ray_env, so that this thread and Ray's never import it at once)

    _RayOwner.join_stopping()
    ray_owner = _RayOwner(address, num_cpus, preload)
    try:
        from ray import tune
        from tqdm.auto import tqdm

        clock["tune_imported"] = time.time()
        checker.result()
    except BaseException:
        checker.kill()
        ray_owner.stop(wait=False)  # the error is reported now; Ray stops once it is up
        raise
    clock["configs_checked"] = time.time()
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "sweep.json"
    if spec_path.exists():
        old = SweepSpec(**json.loads(spec_path.read_text()))
        old_e, new_e = old.essentials(), spec.essentials()
        extends = set(old.seeds) < set(spec.seeds) and {**old_e, "seeds": None} == {**new_e, "seeds": None}
        if old_e != new_e and not extends:
            diff = sorted(k for k, v in new_e.items() if old_e.get(k) != v)
            ray_owner.stop(wait=False)
            hint = (" (seeds may only be added: give every seed already in the sweep)" if diff == ["seeds"] else "")
            raise ConfigError(f"--out {out} holds a sweep with different {', '.join(diff)}{hint}; rerun with the same "
                              "options to resume it, or give a new --out")
        if extends:
            # Tune's saved experiment knows only the old trials; a fresh one covers them all, and the finished
            # trials are skipped by their run directories (interrupted ones resume from their checkpoints).
            added = sorted(set(spec.seeds) - set(old.seeds))
            log.warning("extending the sweep in %s with seeds %s", out, ",".join(map(str, added)))
            shutil.rmtree(out / "tune", ignore_errors=True)
    atomic_write_text(spec_path, json.dumps(asdict(spec), indent=2) + "\n")

    state = SweepState(spec, out, holds_share)
    stale = state.stale()
    if stale:
        # Tune's restore would skip these as finished without calling the trial function: a fresh experiment
        # runs every trial, and run_trial keeps those whose code is unchanged
        log.warning("%d finished trial(s) run again, the code changed since: %s", len(stale),
                    "; ".join(f"{name}: {why}" for name, why in list(stale.items())[:3]))
        shutil.rmtree(out / "tune", ignore_errors=True)
    state.write()
    clock["table_written"] = time.time()
    try:
        ray_owner.wait()
    except BaseException:
        ray_owner.stop()
        raise
    clock["ray_started"] = ray_owner.started_at or time.time()
    clock["ray_waited"] = time.time()
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)  # failures are reported once, by the callback
    trials = state.trials
    param_space = {"job": tune.grid_search([
        {"trial": asdict(t), "spec": asdict(spec), "run_dir": str(state.run_dir(t))} for t in trials])}
    resources = {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial}
    trainable = tune.with_resources(run_trial, resources)
    exp_dir = out / "tune"
    before = state.counts()
    bar = tqdm(total=len(trials), initial=before["n_done"] + before["n_errors"], desc=f"sweep {Path(spec.study).name}", unit="trial",
               disable=not progress, dynamic_ncols=True)
    _LIVE[str(out)] = (state, bar)
    try:
        if tune.Tuner.can_restore(str(exp_dir)):
            tuner = tune.Tuner.restore(str(exp_dir), trainable, resume_unfinished=True, resume_errored=False,
                                       restart_errored=True)
            resumed = True
        else:
            if exp_dir.exists():  # Tune never wrote a restorable state: the run directories are the record
                shutil.rmtree(exp_dir)
            tuner = tune.Tuner(
                trainable, param_space=param_space,
                tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=max_concurrent,
                                            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
                run_config=tune.RunConfig(
                    name="tune", storage_path=str(out), verbose=0,
                    failure_config=tune.FailureConfig(max_failures=max_failures, fail_fast=False),
                    callbacks=[_callback_class()(str(out))]))
            resumed = False
        clock["fit_start"] = time.time()
        tuner.fit()
        clock["fit_end"] = time.time()
    except BaseException:
        bar.close()
        _LIVE.pop(str(out), None)
        ray_owner.stop()
        raise
    bar.close()
    _LIVE.pop(str(out), None)
    ray_owner.stop(wait=False)  # a local instance stops in the background while the table and figures are written
    state = SweepState(spec, out, holds_share)
    summary = state.write()
    from lmlab.report import sweep_figures

    sweep_figures(summary, out)
    clock["written"] = time.time()
    ray_owner.stop()
    if ray_owner.started:
        clock["ray_stopped"] = ray_owner.stopped_at or time.time()
    clock["end"] = time.time()
    timings = breakdown(clock, [_read_done(state.run_dir(t)) for t in state.trials])
    atomic_write_text(out / TIMINGS_FILE, json.dumps(timings, indent=2) + "\n")
    return SweepOutcome(out, state.counts(), summary, resumed, before, timings)


def breakdown(clock: dict[str, float], done: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Where a sweep's wall time went, in seconds: the driver's phases and, from the trials that ran in
    this call, when their worker processes started, imported and ran the study (``sweep-timings.json``)."""
    def span(a: str, b: str) -> float | None:
        return round(clock[b] - clock[a], 3) if a in clock and b in clock else None

    out: dict[str, Any] = {
        "total_s": span("start", "end"),
        "driver": {"check_configs_s": span("start", "configs_checked"),
                   "write_spec_and_table_s": span("configs_checked", "table_written"),
                   "ray_start_background_s": span("start", "ray_started"),
                   "import_tune_s": span("start", "tune_imported"),
                   "wait_for_ray_s": span("table_written", "ray_waited"),
                   "tune_setup_s": span("ray_waited", "fit_start"), "fit_s": span("fit_start", "fit_end"),
                   "table_summary_figures_s": span("fit_end", "written"),
                   "ray_stop_background_s": span("fit_end", "ray_stopped"),
                   "wait_for_ray_stop_s": span("written", "end")},
    }
    ran = [d["timing"] for d in done if d and "timing" in d and d["timing"]["entered"] >= clock["start"]]
    if ran and "fit_start" in clock:
        f0, f1 = clock["fit_start"], clock["fit_end"]
        ps = [t["process_start"] for t in ran if t.get("process_start")]
        out["trials"] = {
            "n": len(ran),
            "worker_process_start_after_fit_s": [round(p - f0, 3) for p in ps],
            "trial_entered_after_fit_s": [round(t["entered"] - f0, 3) for t in ran],
            "imports_and_config_s": [round(t["study_start"] - t["entered"], 3) for t in ran],
            "study_s": [round(t["study_end"] - t["study_start"], 3) for t in ran],
            "fit_end_after_last_study_s": round(f1 - max(t["study_end"] for t in ran), 3),
        }
    return out
