"""The token-assorted pipeline on a micro config: data, VQ-VAE, three models, validator-checked evaluation."""

import json

import numpy as np
import pytest
import torch

from lmlab.studies import STUDIES
from lmlab.studies.token_assorted import (LENGTH_RATIO_MAX, MIN_COMMON, MIN_TRACE_SOLVE, SE_MULT, MazeData,
                                          TokenAssortedStudy, build_data, chunk_table, draw_m, evaluate_arm, iid_rows,
                                          model_batch, pad_batch, sequence)
from lmlab.tasks.maze import BOL, EOL, EOS, PAD, PLAN, TRACE, MazeTask, MazeTaskConfig



def micro_config():
    cfg = TokenAssortedStudy().quick_config()
    return cfg.replace(
        n_train=120, n_eval=6,
        vqvae=cfg.vqvae.replace(d_model=16, n_heads=2, codebook_size=16),
        vq_train=cfg.vq_train.replace(steps=12, eval_every=6, checkpoint_every=6, progress=False),
        model=cfg.model.replace(n_layers=1, d_model=16, n_heads=2),
        train=cfg.train.replace(steps=12, warmup_steps=2, eval_every=6, checkpoint_every=6, progress=False),
        batch_size=8, samples=3,
    )


def test_mixed_sequence_replaces_the_first_chunks():
    task = MazeTask(MazeTaskConfig(size=5, n_keys=1), seed=0)
    data: MazeData = build_data(task, task.mazes(0, 5))
    L, V = 8, len(task.vocab)
    chunks, owner, index = chunk_table(data, L)
    assert index.max() == max(len(t) for t in data.traces) // L - 1
    data.codes = [np.arange(len(chunks))[owner == i][:, None] for i in range(5)]
    i = int(np.argmax([len(t) for t in data.traces]))
    trace_seq = sequence(data, i, "trace", 0, L, V)
    assert sequence(data, i, "mixed", 0, L, V) == trace_seq  # m = 0: the text trace
    mixed = sequence(data, i, "mixed", 2, L, V)
    P = task.prompt_len
    assert mixed[P:P + 5] == [TRACE, BOL, V + int(data.codes[i][0, 0]), V + int(data.codes[i][1, 0]), EOL]
    assert mixed[P + 5:] == trace_seq[P + 1 + 2 * L:]  # the rest of the trace and the plan stay text
    assert len(trace_seq) - len(mixed) == 2 * L - 4
    b = pad_batch([trace_seq, mixed], P)
    assert b.tokens.shape[1] == len(trace_seq) - 1
    assert not b.mask[:, : P - 1].any() and b.mask[0].sum() == len(trace_seq) - P
    assert (b.targets[1, len(mixed) - 1:] == PAD).all() and not b.mask[1, len(mixed) - 1:].any()  # padding: no loss


@pytest.mark.slow
def test_micro_run_writes_summary_figures_and_resumes(tmp_path, one_thread):
    assert STUDIES.get("token-assorted") is TokenAssortedStudy
    summary = TokenAssortedStudy().run(micro_config(), tmp_path, quick=True)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert [c["id"] for c in data["claims"]] == ["answer_only_below_trace_models", "mixed_at_least_trace",
                                                 "mixed_traces_shorter_on_common_mazes"]
    models = data["metrics"]["models"]
    assert set(models) == {"answer", "trace", "mixed"}
    for m in models.values():
        assert 0 <= m["greedy_solve_rate"] <= m["feasible"] + 1e-9 or m["greedy_solve_rate"] <= 1
        assert 0 <= m["optimal"] <= m["feasible"] <= 1 and m["n"] == 6 and m["samples"] == 3
    # the status follows the measured numbers
    c = {c["id"]: c for c in data["claims"]}["mixed_at_least_trace"]
    se = (models["mixed"]["feasible_se"] ** 2 + models["trace"]["feasible_se"] ** 2) ** 0.5
    expect = (models["mixed"]["feasible"] - models["trace"]["feasible"] >= -SE_MULT * se
              and models["trace"]["feasible"] >= MIN_TRACE_SOLVE)
    assert c["status"] == ("pass" if expect else "fail")
    common = data["metrics"]["common_solved"]
    c = {c["id"]: c for c in data["claims"]}["mixed_traces_shorter_on_common_mazes"]
    assert c["status"] == ("pass" if common["n"] >= MIN_COMMON and common["ratio"] <= LENGTH_RATIO_MAX else "fail")
    vq = data["metrics"]["vqvae"]["eval"]
    assert 0 <= vq["token_acc"] <= 1 and 1 <= vq["used"] <= 16 and 0 <= vq["shuffled_chunk_exact"] <= 1
    for fig in summary.figures:
        assert (tmp_path / fig).stat().st_size > 1000
    for arm in ("answer", "trace", "mixed"):  # each arm's metrics are on disk as soon as it is evaluated
        assert json.loads((tmp_path / arm / "eval.json").read_text())["feasible"] == models[arm]["feasible"]
    assert json.loads((tmp_path / "vqvae" / "eval.json").read_text())["eval"]["used"] == vq["used"]
    again = TokenAssortedStudy().run(micro_config(), tmp_path, quick=True, resume=True)
    assert [c.measured for c in again.claims] == [c.measured for c in summary.claims]
    # summary.json's stages: the VQ-VAE and each arm computed, then reused from their checkpoints
    assert set(summary.stages) == {"vqvae", "answer", "trace", "mixed"} == set(again.stages)
    for n, st in summary.stages.items():
        assert st["computed"] and not again.stages[n]["computed"] and again.stages[n]["fingerprint"] == st["fingerprint"]


def test_teacher_forced_plan_metrics_cover_only_the_plan():
    from lmlab.nn import TinyConfig, TinyTransformer
    from lmlab.studies.token_assorted import teacher_forced_metrics

    task = MazeTask(MazeTaskConfig(size=5, n_keys=1), seed=0)
    data = build_data(task, task.mazes(0, 4))
    seqs = [sequence(data, i, "trace", 0, 8, len(task.vocab)) for i in range(4)]
    b = pad_batch(seqs, task.prompt_len)
    model = TinyTransformer(TinyConfig(d_vocab=len(task.vocab), n_ctx=b.tokens.shape[1], n_layers=1, d_model=16))
    plan_len = [len(data.plans[i]) - 1 for i in range(4)]
    with torch.no_grad():
        out = teacher_forced_metrics(model, b)
    assert 0 < out["val_plan_loss"] and out["val_plan_exact"] in (0.0, 0.25, 0.5, 0.75, 1.0)

    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, tokens):
            return torch.nn.functional.one_hot(b.targets, len(task.vocab)).float() * 50

    with torch.no_grad():
        perfect = teacher_forced_metrics(Oracle(), b)
    assert perfect["val_plan_exact"] == 1.0 and perfect["val_plan_loss"] < 1e-6 and perfect["val_loss"] < 1e-6
    assert sum(plan_len) == int(((b.mask) & (torch.arange(b.tokens.shape[1])[None] >=
                                              (b.tokens == PLAN).float().argmax(1, keepdim=True))).sum())


def test_device_reaches_the_vqvae_and_the_models():
    from lmlab.config import set_everywhere

    cfg, paths = set_everywhere(TokenAssortedStudy().quick_config(), "device", "cuda")
    assert set(paths) == {"vq_train.device", "train.device"} and cfg.vq_train.device == "cuda"


def test_mixing_rule_draws_the_spec_set_in_whole_chunks():
    rng = np.random.default_rng(0)
    ms = [draw_m(rng, 100, (0, 72, 128, 160, 192, 224, 256), 8) for _ in range(700)]
    assert set(ms) == {0, 9, 16, 20, 24, 28, 32}  # 72 tokens = 9 chunks of 8
    assert max(draw_m(rng, 5, (0, 72, 256), 8) for _ in range(50)) == 5  # capped at the trace's full chunks
    assert set(draw_m(rng, 100, (0, 72), 16) for _ in range(50)) == {0, 4}  # rounded down to whole chunks


def test_one_feasible_10_on_a_hand_made_case():
    """A scripted 'model' whose samples are fixed: maze 0 has one valid sample among 10 (feasible, and optimal), maze 1
    only a valid detour (feasible, not optimal), maze 2 none (greedy valid there, which 1-Feasible-10 ignores)."""
    task = MazeTask(MazeTaskConfig(size=5, n_keys=1), seed=0)
    data = build_data(task, task.mazes(0, 3))
    plan = task.plan_tokens
    mazes = data.mazes
    detour = mazes[1].path[:2] + mazes[1].path  # a valid walk, two steps longer
    bad = [mazes[0].path[0], mazes[0].path[-1]]  # a teleport
    script = {0: [plan(bad)] * 3 + [[TRACE] + data.traces[0] + plan(mazes[0].path)] + [plan(bad)] * 6,
              1: [plan(detour)] + [[PLAN, EOS]] * 9, 2: [plan(bad)] * 10}
    greedy = {0: plan(bad), 1: [TRACE] + data.traces[0] + plan(bad), 2: [TRACE] + data.traces[2] + plan(mazes[2].path)}

    class Scripted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, prompts, max_len, eos=None, pad=0, temperature=0.0, top_k=None, generator=None):
            row_maze = [int(np.flatnonzero((data.prompts == p.numpy()).all(1))[0]) for p in prompts]
            if temperature == 0:
                outs = [greedy[i] for i in row_maze]
            else:
                assert temperature == 1.0 and top_k == 10
                seen: dict[int, int] = {}
                outs = []
                for i in row_maze:
                    outs.append(script[i][seen.get(i, 0)])
                    seen[i] = seen.get(i, 0) + 1
            T = max(len(o) for o in outs)
            x = torch.full((len(outs), prompts.shape[1] + T), pad, dtype=torch.long)
            for r, o in enumerate(outs):
                x[r, : prompts.shape[1]] = prompts[r]
                x[r, prompts.shape[1]: prompts.shape[1] + len(o)] = torch.tensor(o)
            return x

    r = evaluate_arm(Scripted(), task, data, 400, 22, len(task.vocab), samples=10, progress=False)
    assert [row["feasible"] for row in r["rows"]] == [True, True, False]
    assert [row["optimal"] for row in r["rows"]] == [True, False, False]
    assert [row["greedy_valid"] for row in r["rows"]] == [False, False, True]
    assert r["feasible"] == 2 / 3 and r["optimal"] == 1 / 3 and r["greedy_solve_rate"] == 1 / 3
    assert r["rows"][0]["valid_trace_len"] == 1 + len(data.traces[0])  # TRACE marker + trace, before PLAN
    assert r["rows"][1]["valid_trace_len"] == 0 and r["rows"][2]["valid_trace_len"] is None
    assert abs(r["rows"][0]["share_valid"] - 0.1) < 1e-9
    # the greedy trace against the solver's (maze 1 got maze 0's trace: not exact, and its implied plan is invalid)
    assert [row["greedy_trace_exact"] for row in r["rows"]] == [False, False, True]
    assert [row["greedy_trace_implies_valid_plan"] for row in r["rows"]] == [False, False, True]


def test_training_batches_are_iid_and_resumable():
    """Every batch is an independent uniform sample of the training mazes (no length-sorted windows): the maze counts
    are uniform, a batch's lengths spread as much as the whole set's, and batch ``step`` is the same on a resume."""
    from scipy.stats import chisquare

    task = MazeTask(MazeTaskConfig(size=5, n_keys=1), seed=0)
    data = build_data(task, task.mazes(0, 200))
    L, V, P = 8, len(task.vocab), task.prompt_len
    chunks, owner, _ = chunk_table(data, L)
    data.codes = [np.zeros(((owner == i).sum(), 2), dtype=np.int64) for i in range(200)]
    counts = np.bincount(np.concatenate([iid_rows(0, 1, step, 200, 32)[1] for step in range(300)]), minlength=200)
    assert chisquare(counts).pvalue > 1e-3
    assert (iid_rows(0, 1, 7, 200, 32)[1] == iid_rows(0, 1, 7, 200, 32)[1]).all()  # a pure function of the step
    assert not (iid_rows(0, 1, 7, 200, 32)[1] == iid_rows(0, 1, 8, 200, 32)[1]).all()
    lengths = np.array([1 + len(t) + len(q) for t, q in zip(data.traces, data.plans)])
    within = []
    for step in range(40):
        b = model_batch(data, "trace", 0, 2, step, 32, (0,), L, V, P)
        n = (torch.cat([b.tokens[:, :1], b.targets], 1) != PAD).sum(1).numpy() - P  # each row's trace and plan
        assert not (np.all(np.diff(n) >= 0) or np.all(np.diff(n) <= 0))  # not sorted by length
        within.append(n.var())
    assert np.mean(within) > 0.7 * lengths.var()  # length-sorted windows would have almost no spread within a batch
    again = model_batch(data, "mixed", 0, 3, 5, 32, (0, 16, 32), L, V, P)
    assert torch.equal(again.tokens, model_batch(data, "mixed", 0, 3, 5, 32, (0, 16, 32), L, V, P).tokens)
    assert (again.tokens == BOL).any(1).float().mean() > 0.3  # m drawn per row: some rows start with latents


def test_goal_first_plans_are_judged_start_first():
    """With ``plan_order="goal"`` the training plan is the path reversed, and a generated goal-first plan is read back
    start first before the validator judges it (the reversed start-first plan is not)."""
    from lmlab.studies.token_assorted import _judge

    task = MazeTask(MazeTaskConfig(size=5, n_keys=1, plan_order="goal"), seed=0)
    data = build_data(task, task.mazes(0, 2))
    m = data.mazes[0]
    assert data.plans[0] == [PLAN] + [task.vocab.cell(c) for c in m.path[::-1]] + [EOS]
    ok = _judge(task, m, [TRACE] + data.traces[0] + data.plans[0], len(task.vocab))
    assert ok["valid"] and ok["optimal"] and ok["path"] == m.path
    start_first = [PLAN] + [task.vocab.cell(c) for c in m.path] + [EOS]
    assert not _judge(task, m, start_first, len(task.vocab))["valid"]


def test_trace_imitation_script_finds_the_first_divergence():
    """scripts/token_assorted_trace_imitation.py: the first differing token and the search order with costs left out."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "token_assorted_trace_imitation.py"
    spec = importlib.util.spec_from_file_location("ta_trace_imitation", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    task = MazeTask(MazeTaskConfig(size=5, n_keys=1, plan_order="goal"), seed=0)
    m = task.maze(1)
    true = [TRACE] + task.trace_tokens(m) + task.plan_tokens(m.path)
    assert mod.first_divergence(true, true) is None
    assert mod.first_divergence(true[:10], true) == 10  # stopped early
    bad = list(true)
    bad[5] = task.vocab.cost(0) if bad[5] != task.vocab.cost(0) else task.vocab.cost(1)  # the first close's h
    assert mod.first_divergence(bad, true) == 5 and task.token_kinds(true)[5] == "close_h"
    # costs left out, the search order is untouched by a wrong h
    assert mod.expansions(bad) == mod.expansions(true)
    assert len(mod.expansions(true)) == sum(e[0] == "close" for e in m.trace)
