"""DDP over 2 CPU processes (gloo) trains like one process with the same global batch, and resumes."""

import socket

import pytest
import torch
import torch.multiprocessing as mp

from lmlab.studies.toy import ToyConfig, toy_batch, toy_model
from lmlab.train import TrainConfig, read_metrics, train

CFG = ToyConfig(seed=4, batch_size=12, train=TrainConfig(steps=16, lr=0.03, eval_every=5, log_every=2,
                                                          checkpoint_every=4, warmup_steps=3, schedule="cosine",
                                                          grad_clip=1.0, seed=4, progress=False))


class Killed(Exception):
    pass


def run(out, kill_at=None, resume=False):
    held_out = toy_batch(CFG, 10**6, 32)

    def batch_fn(step):
        if kill_at is not None and step == kill_at:
            raise Killed()
        return toy_batch(CFG, step)

    def eval_fn(model, step):
        logits = model(held_out.tokens)
        return {"loss": torch.nn.functional.cross_entropy(logits[held_out.mask], held_out.targets[held_out.mask]).item()}

    model = toy_model(CFG)
    res = train(model, CFG.train, batch_fn, out, eval_fn=eval_fn, resume=resume)
    return res, model


def _worker(rank, port, tmp):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        # rank 1 passes its own directory, as a study on rank 1 would; it resumes from rank 0's checkpoint
        run(f"{tmp}/ddp" if rank == 0 else f"{tmp}/scratch1")
        try:
            run(f"{tmp}/ddp-resumed" if rank == 0 else f"{tmp}/scratch1b", kill_at=10)
        except Killed:
            pass
        res, model = run(f"{tmp}/ddp-resumed" if rank == 0 else f"{tmp}/scratch1b", resume=True)
        if rank == 0:
            torch.save({"state": model.state_dict(), "resumed_from": res.resumed_from}, f"{tmp}/ddp-final.pt")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path, one_thread):
    _, single = run(tmp_path / "single")
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)

    ref = read_metrics(tmp_path / "single")
    for name in ("ddp", "ddp-resumed"):
        rows = read_metrics(tmp_path / name)
        assert [(r["kind"], r["step"]) for r in rows] == [(r["kind"], r["step"]) for r in ref]  # same form
        for a, b in zip(rows, ref):
            assert set(a) == set(b)
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5), (name, a, b)
            if "lr" in a:
                assert a["lr"] == b["lr"]
    assert not (tmp_path / "scratch1" / "checkpoint.pt").exists()  # only rank 0 writes checkpoints
    assert read_metrics(tmp_path / "scratch1") == read_metrics(tmp_path / "ddp")  # every rank logs the same
    final = torch.load(tmp_path / "ddp-final.pt")
    assert final["resumed_from"] == 8  # killed at step 10, last checkpoint at 8
    for k, v in single.state_dict().items():
        torch.testing.assert_close(final["state"][k], v, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_lmlab_run_nproc_2_matches_one_process(tmp_path, one_thread):
    """`lmlab run --nproc 2` relaunches itself under torchrun; rank 0's run directory is the run's."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in [str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")] if p)}
    base = [sys.executable, "-m", "lmlab", "run", "lmlab.studies.toy:ToyStudy", "--threads", "1", "--no-progress",
            "--set", "train.steps=20"]
    subprocess.run(base + ["--nproc", "2", "--out", str(tmp_path / "ddp")], check=True, env=env,
                   capture_output=True)
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    from lmlab.studies.runner import make_config
    from lmlab.studies.toy import ToyStudy

    study = ToyStudy()
    one = study.run(make_config(study, overrides=["train.steps=20"], progress=False), tmp_path / "one").to_dict()
    assert [c["status"] for c in ddp["claims"]] == [c["status"] for c in one["claims"]]
    assert ddp["metrics"]["final_loss"] == pytest.approx(one["metrics"]["final_loss"], rel=1e-3, abs=1e-5)
    assert not (tmp_path / "ddp" / ".rank1").exists()  # rank 1's scratch copy is removed
