import math

import numpy as np
import pytest
import torch

from lmlab.studies.two_hop import (
    COLLAPSED_LOSS, MIN_HALVING_STEP, PLATEAU_TOL, analyze_transition, answer_metrics, attention_scores,
    simulate_three_param, three_param_loss,
)
from lmlab.tasks.two_hop import TwoHopTask, TwoHopTaskConfig


def test_transition_detected_on_synthetic_curve():
    steps = list(range(0, 2000, 50))
    acc = [0.05 if s < 200 else 0.2 if s < 1200 else 0.6 if s == 1200 else 1.0 for s in steps]
    tr = analyze_transition(steps, acc, chance=0.2)
    assert tr["t_half"] == 1200 and tr["t_start"] == 1150 and tr["t_solved"] == 1250 and tr["jump_steps"] == 100
    assert tr["slow_acc"] == pytest.approx(0.2, abs=0.02)


def test_no_transition_reported_as_none():
    tr = analyze_transition([0, 50, 100], [0.2, 0.21, 0.19], chance=0.2)
    assert tr["t_half"] is None and tr["jump_steps"] is None and tr["slow_acc"] is None  # no transition, no slow phase


def test_slow_window_is_fixed_by_t_half_not_by_the_tested_tolerance():
    # accuracy well above 1/K + 0.1 before the jump: the slow phase is still found, and its accuracy fails the claim
    steps = list(range(0, 1000, 10))
    acc = [0.45 if s < 800 else 1.0 for s in steps]
    tr = analyze_transition(steps, acc, chance=0.2)
    assert tr["t_half"] == 800 and tr["slow_window"] == [200, 600] and tr["slow_acc"] == pytest.approx(0.45)


def test_three_param_loss_at_zero_is_ln31():
    z = torch.tensor(0.0)
    # gamma = 0 makes z = 0
    assert three_param_loss(torch.tensor(1.0), torch.tensor(1.0), z).item() == pytest.approx(math.log(31))


@pytest.mark.slow
def test_three_param_model_plateaus_then_collapses():
    runs = simulate_three_param(seeds=[0, 1, 2], steps=4000)
    for run in runs:
        loss = run["loss"]
        assert abs(loss[:100].mean() - math.log(31)) < PLATEAU_TOL  # plateau at ln 31
        assert loss[-1] < COLLAPSED_LOSS  # collapse
        assert np.argmax(loss < loss[0] / 2) > MIN_HALVING_STEP  # not immediately
    assert runs[0]["params"] != runs[1]["params"]


def _hand_built(K=2):
    """One example, K=2, a hand-built attention pattern that implements the circuit exactly."""
    task = TwoHopTask(TwoHopTaskConfig(n_chains=K, n_entities=6))
    s = task.sample(1, np.random.default_rng(0))
    T = task.n_ctx
    P = torch.zeros(1, 1, T, T)
    pos = s.premise_pos[0]
    for t in range(T):
        P[0, 0, t, t] = 1.0
    for c in range(K):  # layer-0 edges: second token of a premise -> first
        for p in pos[c]:
            P[0, 0, p + 1, p + 1], P[0, 0, p + 1, p] = 0.0, 1.0
    return task, s, P


def test_attention_scores_on_hand_built_patterns():
    task, s, P0 = _hand_built()
    T, pos = task.n_ctx, s.premise_pos[0]
    P1 = torch.eye(T)[None, None].clone()
    q = s.query_chain[0]
    for c in range(2):  # layer 1: End -> Brg of premise 1, and the query -> Brg of its chain's premise 1
        end = pos[c, 1] + 1
        P1[0, 0, end, end], P1[0, 0, end, pos[c, 0] + 1] = 0.0, 1.0
    P1[0, 0, task.answer_index, task.answer_index], P1[0, 0, task.answer_index, pos[q, 0] + 1] = 0.0, 1.0
    P2 = torch.eye(T)[None, None].clone()
    P2[0, 0, task.answer_index, task.answer_index] = 0.0
    P2[0, 0, task.answer_index, pos[q, 1] + 1] = 0.75
    P2[0, 0, task.answer_index, pos[1 - q, 1] + 1] = 0.25
    sc = attention_scores([P0, P1, P2], s, task.answer_index)
    assert sc["prev_token"] == [[1.0], [0.0], [0.0]]
    assert sc["end_bridge"] == [[0.0], [1.0], [0.0]]
    assert sc["query_bridge"] == [[0.0], [1.0], [0.0]]
    assert sc["query_end"][2] == [0.75] and sc["query_distract"][2] == [0.25]


def test_answer_metrics_uniform_guessing():
    task = TwoHopTask(TwoHopTaskConfig())
    s = task.sample(64, np.random.default_rng(0))
    logits = torch.full((64, task.n_ctx, task.d_vocab), -30.0)
    logits[torch.arange(64)[:, None], task.answer_index, torch.from_numpy(s.chains[:, :, 2])] = 0.0
    m = answer_metrics(logits, s, task.answer_index)
    assert m["p_target"] == pytest.approx(0.2, abs=1e-3) and m["p_distract"] == pytest.approx(0.8, abs=1e-3)
    assert m["candidate_mass"] == pytest.approx(1.0, abs=1e-3) and m["loss"] == pytest.approx(math.log(5), abs=1e-3)
