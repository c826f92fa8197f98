"""`lmlab sweep` killed mid-way resumes without redoing finished trials, and runs a finished trial again once its code
changed. Its own file (and Ray instance) so that `make test`'s two processes can run it beside test_sweep.py's 3 x 2
sweep: the two are the suite's longest tests."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from lmlab.sweep import SweepSpec, run_sweep

from sweep_helpers import TOY, executions, ray_address  # noqa: F401 (ray_address: a fixture; before Ray is imported)

tune = pytest.importorskip("ray.tune", reason="needs the dist extra: pip install -e '.[dist]'")


@pytest.mark.slow
def test_killed_sweep_resumes_without_redoing_finished_trials(tmp_path, ray_address):
    # slow steps, frequent checkpoints: the kill lands while one trial is mid-way through training. One trial at a
    # time (the resumed sweep keeps Tune's settings): each trial at once starts a Ray worker of its own, which
    # imports Ray, Tune and torch, the larger part of this test's time; the kill then lands in the second trial
    spec = SweepSpec(TOY, [0, 1, 2], overrides=["train.steps=30", "train.eval_every=15", "train.checkpoint_every=2", "step_sleep=0.1"])
    script = ("import sys; from lmlab.sweep import SweepSpec, run_sweep; "
              f"run_sweep(SweepSpec(**{asdict(spec)!r}), sys.argv[1], address=sys.argv[2], progress=False, "
              "max_concurrent=1)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).parents[2] / "src"),
                                                                  os.environ.get("PYTHONPATH", "")] if p)}
    driver = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), ray_address], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "runs"

    def finished():
        return {d.name for d in runs.glob("*") if (d / "sweep-trial.json").exists()}

    def interrupted(max_step=None):  # checkpointed, not finished (and not near its end)
        return {d.name for d in runs.glob("*") if (d / "checkpoint.pt").exists() and d.name not in finished()
                and (max_step is None or _last_step(d) <= max_step)}

    deadline = time.time() + 120
    try:
        while not (finished() and interrupted(max_step=15)):
            assert driver.poll() is None, "the sweep ended before it could be killed"
            assert time.time() < deadline, "no trial finished within 120 s"
            time.sleep(0.1)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    # Ray ends the dead driver's trials; wait until their processes are gone before resuming
    pids = {e["pid"] for d in runs.iterdir() for e in executions(d)}
    for _ in range(100):
        if not any(_alive(p) for p in pids):
            break
        time.sleep(0.1)
    finished_before = {n: executions(runs / n) for n in finished()}
    mid = interrupted()
    assert mid

    res = run_sweep(spec, tmp_path, progress=False)
    assert res.counts["n_done"] == 3 and res.counts["n_errors"] == 0
    for name, before in finished_before.items():
        assert executions(runs / name) == before, f"{name} finished before the kill and ran again"
    for name in mid:  # resumed from its checkpoint, not from step 0
        assert json.loads((runs / name / "summary.json").read_text())["metrics"]["resumed_from"] > 0, name

    # a finished trial whose code changed runs again through Tune (whose restore would skip it); the rest are kept
    from lmlab.sweep import DONE_FILE

    assert tune.Tuner.can_restore(str(tmp_path / "tune"))
    stale_dir = runs / "seed0"
    done = json.loads((stale_dir / DONE_FILE).read_text())
    (stale_dir / DONE_FILE).write_text(json.dumps({**done, "code": {**done["code"], "studies/toy.py": "older"}}))
    kept = {n: executions(runs / n) for n in ("seed1", "seed2")}
    n_stale = len(executions(stale_dir))
    res = run_sweep(spec, tmp_path, progress=False, max_concurrent=1)
    assert res.counts["n_done"] == 3 and res.counts["n_errors"] == 0
    assert len(executions(stale_dir)) == n_stale + 1 and {n: executions(runs / n) for n in kept} == kept


def _last_step(run_dir: Path) -> int:
    try:
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError):
        return 10**9
    return rows[-1]["step"] if rows else 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
