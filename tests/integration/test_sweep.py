"""`lmlab sweep` on one local Ray instance shared by the module: completes, reports a failing trial, adds seeds, reruns
stale trials (the kill-and-resume test is in test_sweep_resume.py, so `make test`'s two processes run it beside these)."""

import json
import sys
import time
from dataclasses import asdict

import pytest

from lmlab.config import ConfigError
from lmlab.sweep import SweepSpec, parse_grid, parse_seeds, run_sweep

from sweep_helpers import TOY, executions, ray_address  # noqa: F401 (ray_address: a fixture; before Ray is imported)

pytest.importorskip("ray.tune", reason="needs the dist extra: pip install -e '.[dist]'")
pq = pytest.importorskip("pyarrow.parquet", reason="needs the dist extra (pyarrow writes sweep.parquet): pip install -e '.[dist]'")

FAST = ["train.steps=20", "train.eval_every=10"]


def test_parse_seeds_and_grid():
    assert parse_seeds("0-2,5,4") == [0, 1, 2, 4, 5]
    assert parse_grid(["a.b=1,2", "c=x"]) == {"a.b": ["1", "2"], "c": ["x"]}
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds("3-1")
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_grid(["train.lr"])
    assert len(SweepSpec("x", [0, 1, 2], {"a": ["1", "2"], "b": ["x", "y"]}).trials()) == 12


def test_bad_override_fails_before_any_trial_runs(tmp_path, ray_address):
    # (Ray starts in the background while configs are checked; here it is the module's instance)
    with pytest.raises(ConfigError, match="train.lrr"):
        run_sweep(SweepSpec(TOY, [0], {"train.lrr": ["1"]}), tmp_path, progress=False)
    assert not (tmp_path / "tune").exists() and not (tmp_path / "runs").exists()


def test_model_without_a_needed_capability_fails_before_any_trial_runs(tmp_path):
    # llm-sinks reads attention patterns: an OpenAI-compatible endpoint cannot give them (never contacted)
    from lmlab.sweep import check_configs

    spec = SweepSpec("llm-sinks", [0], overrides=["lm.model=http://127.0.0.1:9/v1#m"], quick=True)
    with pytest.raises(ConfigError, match="capabilit"):
        check_configs(spec)


def test_local_instance_leaves_out_the_head_processes_a_sweep_does_not_use(ray_address):
    import ray

    node = ray._private.worker._global_node
    if node is None or not node.head:
        # the module fixture attaches to an already running instance when one exists (RAY_ADDRESS); its head
        # processes are that instance's choice, not lmlab's, so there is nothing of ours to check
        pytest.skip("Ray was started outside this module (RAY_ADDRESS): its head processes are not lmlab's to check")
    kinds = set(node.all_processes)
    assert {"gcs_server", "raylet"} <= kinds and not kinds & {"monitor", "log_monitor", "dashboard"}


@pytest.mark.slow
def test_configs_are_checked_in_a_child_unless_the_study_is_imported_here():
    import lmlab.studies.toy  # noqa: F401
    from lmlab.sweep import _ConfigCheck

    here = _ConfigCheck(SweepSpec(TOY, [0], {"train.lrr": ["1"]}))
    assert here._proc is None
    with pytest.raises(ConfigError, match="train.lrr"):
        here.result()
    child = _ConfigCheck(SweepSpec(TOY.replace("toy:", "toy_missing:"), [0]))  # a module not imported here
    assert child._proc is not None
    with pytest.raises(ConfigError, match="cannot import"):
        child.result()
    assert _ConfigCheck(SweepSpec(TOY, [0, 1], overrides=FAST)).result() is None  # a valid spec: checked, no error


@pytest.mark.slow
def test_sweep_of_three_seeds_by_two_configs_completes_and_reports_a_failing_trial(tmp_path, ray_address):
    # one sweep for both behaviours (each Ray Tune run costs seconds of setup): seed 1 raises in every config.
    # Most of this test's time is Ray worker processes starting (each imports Ray, Tune and torch): Tune starts
    # one per concurrent trial, and a new one for the next trial after a failed one (a failed trial's worker is
    # not reused). Trials run in the order of the seeds given, so the failing seed is listed last.
    spec = SweepSpec(TOY, [0, 2, 1], {"train.lr": ["0.0003", "0.03"]}, overrides=FAST + ["fail_seeds=[1]"])
    res = run_sweep(spec, tmp_path, progress=False)
    assert res.counts == {"n_trials": 6, "n_done": 4, "n_errors": 2, "n_pending": 0}
    table = pq.read_table(tmp_path / "sweep.parquet").to_pylist()
    ok = [r for r in table if r["status"] != "error"]
    assert len(ok) == 4 * 2  # one row per finished trial and claim
    assert {r["seed"] for r in ok} == {0, 2} and {r["train.lr"] for r in ok} == {0.0003, 0.03}
    assert {r["status"] for r in ok} <= {"pass", "fail"}
    failed = [r for r in table if r["status"] == "error"]
    assert {r["seed"] for r in failed} == {1} and "fail_seeds" in failed[0]["error"]
    errors = sorted((tmp_path / "errors").iterdir())
    assert len(errors) == 2
    error = errors[0].read_text()
    assert "in execute" in error and "\x1b[" not in error  # the traceback, without terminal colours
    summary = json.loads((tmp_path / "sweep-summary.json").read_text())
    by_lr = {p["grid"]["train.lr"]: p["claims"]["learns"] for p in summary["points"]}
    good = by_lr[0.03]
    assert good["n_pass"] == 2 and good["n_errors"] == 1 and good["pass_rate"] == pytest.approx(2 / 3)
    assert not good["holds"]  # 2 of 3 < 0.8: the crashed seed counts against the claim
    assert good["paper_value"] == 0.0 and good["holds_share"] == 0.8
    assert by_lr[0.0003]["n_pass"] == 0
    # (a re-run skips finished trials: the kill-and-resume test checks that, and that a finished trial whose code
    # changed runs again)
    with pytest.raises(ConfigError, match="different seeds"):
        run_sweep(SweepSpec(TOY, [0, 1], {"train.lr": ["0.0003", "0.03"]}, overrides=FAST + ["fail_seeds=[1]"]),
                  tmp_path, progress=False)
    # seeds may be added to a sweep: only the new seed's trials run, the finished ones are kept (the failed ones
    # are tried again). One trial at a time: two at once would start one more worker and save nothing here
    runs = tmp_path / "runs"
    before = {d.name: executions(d) for d in runs.iterdir() if (d / "sweep-trial.json").exists()}
    res = run_sweep(SweepSpec(TOY, [0, 2, 3, 1], {"train.lr": ["0.0003", "0.03"]}, overrides=FAST + ["fail_seeds=[1]"]),
                    tmp_path, progress=False, max_concurrent=1)
    assert res.counts["n_trials"] == 8 and res.counts["n_done"] == 6 and res.counts["n_errors"] == 2
    assert sorted(p.name for p in runs.iterdir() if (p / "sweep-trial.json").exists()) == sorted(
        f"seed{s}-train.lr={lr}" for s in (0, 2, 3) for lr in ("0.0003", "0.03"))
    assert {name: executions(runs / name) for name in before} == before
    assert all(len(executions(runs / f"seed3-train.lr={lr}")) == 1 for lr in ("0.0003", "0.03"))
    assert all(len(executions(runs / f"seed1-train.lr={lr}")) == 2 for lr in ("0.0003", "0.03"))


def test_table_summary_and_report_without_ray(tmp_path):
    """SweepState reads run directories (as trials leave them) into the table, the summary and the report."""
    from lmlab.claims import Claim, Summary
    from lmlab.report import build_report
    from lmlab.sweep import DONE_FILE, SweepState, loaded_code

    spec = SweepSpec(TOY, [0, 1, 2, 3, 4], {"train.lr": ["0.01", "0.1"], "d_model": ["8", "16"]})
    state = SweepState(spec, tmp_path)
    for t in state.trials:
        d = state.run_dir(t)
        if t.seed == 4 and t.point["d_model"] == "8":
            state.record_error(t, "Traceback ...\nRuntimeError: out of memory\n")
            continue
        ok = float(t.point["train.lr"]) > 0.05 or t.seed < 2
        Summary("toy", [Claim("learns", "it learns", 0.0, 0.1 if ok else 0.9, "loss <= 0.5", "pass" if ok else "fail")],
                {}, t.seed, False, "toy/1", provenance={}).write(d)
        (d / DONE_FILE).write_text(json.dumps({"code": loaded_code()}))  # finished with the code that is here
    state.write()
    rows = pq.read_table(tmp_path / "sweep.parquet").to_pylist()
    assert len(rows) == 20 and sum(r["status"] == "error" for r in rows) == 2
    assert set(rows[0]) >= {"seed", "train.lr", "d_model", "claim_id", "measured", "status"}
    s = json.loads((tmp_path / "sweep-summary.json").read_text())
    pts = {(p["grid"]["train.lr"], p["grid"]["d_model"]): p["claims"]["learns"] for p in s["points"]}
    assert pts[(0.1, 16)]["holds"] and pts[(0.1, 16)]["pass_rate"] == 1.0
    # 4 passes and 1 crash: the crash counts against, 4/5 = 0.8 still holds at the 0.8 threshold
    assert pts[(0.1, 8)]["pass_rate"] == 0.8 and pts[(0.1, 8)]["n_errors"] == 1 and pts[(0.1, 8)]["holds"]
    assert pts[(0.01, 16)]["pass_rate"] == 0.4 and not pts[(0.01, 16)]["holds"]
    page, n = build_report(tmp_path, tmp_path / "report.html")
    html = page.read_text()
    assert n == 1 and "holds" in html and "at least 80%" in html and "out of memory" in html
    assert (tmp_path / "sweep-grid.png").exists() and (tmp_path / "sweep-claims.png").exists()


@pytest.mark.parametrize("name", ["lmlab.sweep", "lmlab.studies.runner"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.filterwarnings("ignore:`report` is meant")
def test_finished_trial_is_rerun_when_the_code_changed(tmp_path, caplog):
    # outside Tune: run_trial is a plain function; a finished trial is skipped only while the lmlab modules it
    # loaded are unchanged (a per-file record, so editing a module the study never loads keeps it)
    from lmlab.sweep import DONE_FILE, Trial, code_changes, loaded_code, run_trial

    spec = SweepSpec(TOY, [0], overrides=FAST)
    run_dir = tmp_path / "seed0"
    job = {"job": {"spec": asdict(spec), "trial": asdict(Trial("seed0", 0, {})), "run_dir": str(run_dir)}}
    run_trial(job)
    done = json.loads((run_dir / DONE_FILE).read_text())
    code = done["code"]
    assert "studies/toy.py" in code and "sweep.py" in code and code_changes(code) is None
    assert set(code) <= {m.__file__.split("/lmlab/", 1)[-1] for n, m in list(sys.modules.items())
                         if n.startswith("lmlab") and getattr(m, "__file__", None)}  # only modules loaded here
    assert len(executions(run_dir)) == 1
    run_trial(job)
    assert len(executions(run_dir)) == 1  # same code: kept
    (run_dir / DONE_FILE).write_text(json.dumps({**done, "code": {**code, "studies/toy.py": "older"}}))
    run_trial(job)
    assert len(executions(run_dir)) == 2 and "lmlab/studies/toy.py" in caplog.text
    assert json.loads((run_dir / DONE_FILE).read_text())["code"]["studies/toy.py"] == code["studies/toy.py"]
    (run_dir / DONE_FILE).write_text(json.dumps({**done, "code": "a whole-package hash"}))  # an older lmlab's record
    run_trial(job)
    assert len(executions(run_dir)) == 3 and "without a per-module code record" in caplog.text


def test_unreachable_address_fails_in_one_line_at_once():
    # Ray retries an address where nothing listens for minutes; the sweep checks it first
    from lmlab.sweep import _check_reachable

    t = time.perf_counter()
    with pytest.raises(ConfigError, match=r"--address 127.0.0.1:9: nothing answers there"):
        _check_reachable("127.0.0.1:9")
    assert time.perf_counter() - t < 10
    _check_reachable("auto")  # left to Ray
