"""Keys-finding mazes: always solvable, the solver's path is legal and shortest, the validator rejects illegal paths."""

from collections import deque

import numpy as np
import pytest

from lmlab.config import ConfigError
from lmlab.tasks import TASKS
from lmlab.tasks.maze import (BOS, CLOSE, EOS, PLAN, TRACE, WALL, Maze, MazeTask, MazeTaskConfig, solve,
                              validate_path)


def bfs_distance(m: Maze) -> int | None:
    """Independent check: breadth-first search over (cell, keys), written without the solver's helpers."""
    n = m.size
    start = (m.start, 0)
    seen, queue = {start: 0}, deque([start])
    while queue:
        (r, c), keys = state = queue.popleft()
        if (r, c) == m.goal:
            return seen[state]
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if not (0 <= nr < n and 0 <= nc < n) or m.grid[nr, nc] == WALL:
                continue
            v = int(m.grid[nr, nc])
            if v >= 4 + m.n_keys and not keys >> (v - 4 - m.n_keys) & 1:
                continue
            nkeys = keys | (1 << (v - 4)) if 4 <= v < 4 + m.n_keys else keys
            if ((nr, nc), nkeys) not in seen:
                seen[((nr, nc), nkeys)] = seen[state] + 1
                queue.append(((nr, nc), nkeys))
    return None


@pytest.mark.parametrize("size,n_keys,wall_density,n", [(5, 1, 0.2, 30), (7, 2, 0.3, 8), (4, 0, 0.4, 30), (6, 2, 0.4, 8)])
def test_always_solvable_and_paths_legal_and_shortest(size, n_keys, wall_density, n):
    for seed in range(10):
        task = MazeTask(MazeTaskConfig(size=size, n_keys=n_keys, wall_density=wall_density), seed=seed)
        for i in range(n):
            _check_maze(task.maze(i), n_keys, task)


def _check_maze(m, n_keys, task=None):
    assert validate_path(m, m.path) == (True, "ok")
    if task is not None:  # the trace determines the plan: its parent pointers, read back from the goal
        assert task.plan_from_trace(m, task.trace_tokens(m)) == m.path
    assert len(m.path) - 1 == bfs_distance(m)  # A* with an admissible heuristic: shortest
    # the keys are needed: every key on the path, each before its door
    for k in range(n_keys):
        kpos = tuple(int(v) for v in np.argwhere(m.grid == 4 + k)[0])
        dpos = tuple(int(v) for v in np.argwhere(m.grid == 4 + n_keys + k)[0])
        assert m.path.index(kpos) < m.path.index(dpos)


@pytest.mark.slow
def test_many_seeds_always_solvable():
    """2,000 quick-config mazes over 100 seeds: each is returned solved, and the solution is legal."""
    for seed in range(100):
        task = MazeTask(MazeTaskConfig(size=5, n_keys=1), seed=seed)
        for i in range(20):
            _check_maze(task.maze(i), 1, task)


def test_seeded_and_versioned():
    a, b = MazeTask(MazeTaskConfig(), seed=1), MazeTask(MazeTaskConfig(), seed=1)
    assert all((a.maze(i).grid == b.maze(i).grid).all() and a.maze(i).path == b.maze(i).path for i in range(20))
    assert any((a.maze(i).grid != MazeTask(MazeTaskConfig(), seed=2).maze(i).grid).any() for i in range(5))
    assert MazeTask.version == "maze/2" and TASKS.get("maze") is MazeTask


@pytest.fixture
def corridor():
    """S . k . / # # A # / . . . G: the key is right of the start, the door below it."""
    grid = np.array([[2, 0, 4, 0], [1, 1, 5, 1], [0, 0, 0, 3], [0, 1, 0, 0]])
    return Maze(grid, 1, (0, 0), (2, 3))


def test_validator_rejects_illegal_paths(corridor):
    m = corridor
    good = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 3)]
    assert validate_path(m, good) == (True, "ok")
    assert solve(m)[1] == good
    bad = {
        "wall": [(0, 0), (1, 0)],
        "teleport": [(0, 0), (2, 3)],
        "diagonal": [(0, 0), (0, 1), (1, 2), (2, 2), (2, 3)],
        "not reaching the goal": [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2)],
        "wrong start": [(0, 1), (0, 2), (1, 2), (2, 2), (2, 3)],
        "leaves the grid": [(0, 0), (-1, 0)],
        "empty": [],
    }
    for name, path in bad.items():
        ok, why = validate_path(m, path)
        assert not ok, name
    assert "wall" in validate_path(m, bad["wall"])[1]
    assert "jumps" in validate_path(m, bad["teleport"])[1]
    assert "goal" in validate_path(m, bad["not reaching the goal"])[1]


def test_locked_door_needs_the_key():
    # S . A . G with the key behind the start: walking straight through the door is illegal
    grid = np.array([[2, 0, 5, 0, 3], [4, 1, 1, 1, 1]])
    m = Maze(np.vstack([grid, np.ones((3, 5), dtype=int)]), 1, (0, 0), (0, 4))
    ok, why = validate_path(m, [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)])
    assert not ok and "without key 0" in why
    assert validate_path(m, [(0, 0), (1, 0), (0, 0), (0, 1), (0, 2), (0, 3), (0, 4)]) == (True, "ok")
    assert solve(m)[1] == [(0, 0), (1, 0), (0, 0), (0, 1), (0, 2), (0, 3), (0, 4)]


def test_tokens_and_plan_parsing():
    task = MazeTask(MazeTaskConfig(size=5, n_keys=1), seed=0)
    m = task.maze(7)
    seq = task.tokens(m, "trace")
    assert seq[0] == BOS and seq[task.prompt_len] == TRACE and seq[-1] == EOS
    assert seq.count(CLOSE) == sum(e[0] == "close" for e in m.trace)
    plan = seq[seq.index(PLAN):]
    assert task.parse_plan(plan) == m.path
    assert task.tokens(m, "answer") == task.prompt(m) + plan
    assert task.parse_plan(plan[:-1]) is None  # no EOS
    assert task.parse_plan([PLAN, TRACE, EOS]) is None  # not a cell
    assert max(seq) < len(task.vocab)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="size"):
        MazeTaskConfig(size=4, n_keys=2)
    with pytest.raises(ConfigError, match="wall_density"):
        MazeTaskConfig(wall_density=0.9)


def test_trace_has_costs_and_parent_pointers_and_a_broken_pointer_breaks_the_plan():
    task = MazeTask(MazeTaskConfig(size=5, n_keys=1), seed=0)
    m = task.maze(2)
    v = task.vocab
    toks = task.trace_tokens(m)
    closed = task.closed_from_trace(toks)
    assert [(c, k) for c, k, _, _ in closed] == [(e[1], e[2]) for e in m.trace if e[0] == "close"]
    assert closed[0] == (m.start, 0, 0, m.start) and closed[-1][0] == m.goal and closed[-1][2] == len(m.path) - 1
    # every expansion's parent is a neighbour expanded earlier with cost g - 1
    for j, (cell, keys, g, par) in enumerate(closed[1:], 1):
        assert abs(cell[0] - par[0]) + abs(cell[1] - par[1]) == 1
        assert any(c == par and gg == g - 1 for c, _, gg, _ in closed[:j])
    # the h written is the Manhattan distance to the goal
    i = toks.index(CLOSE)
    assert toks[i + 3] - v.cost0 == abs(m.start[0] - m.goal[0]) + abs(m.start[1] - m.goal[1])
    # corrupt the goal's parent pointer: the plan read off the trace is gone
    last = len(toks) - 1 - toks[::-1].index(CLOSE)
    bad = list(toks)
    bad[last + 4] = v.cell(m.goal)
    assert task.plan_from_trace(m, bad) is None
    assert task.plan_from_trace(m, toks[:-3]) is None  # truncated: malformed
    assert task.closed_from_trace([CLOSE, PLAN]) is None


def test_goal_first_plan_is_one_parent_lookup_per_step():
    start_first = MazeTask(MazeTaskConfig(size=5, n_keys=1), seed=0)
    task = MazeTask(MazeTaskConfig(size=5, n_keys=1, plan_order="goal"), seed=0)
    for i in range(20):
        m = task.maze(i)
        assert m.path == start_first.maze(i).path and task.trace_tokens(m) == start_first.trace_tokens(m)
        plan = task.tokens(m, "trace")[-len(m.path) - 2:]
        assert plan[0] == PLAN and plan[-1] == EOS
        written = [task.vocab.to_cell(t) for t in plan[1:-1]]
        assert written == m.path[::-1] and task.parse_plan(plan) == m.path  # parsed back start first
        # walking the written plan: each next cell is the parent pointer of the current cell's expansion with cost g
        closed = task.closed_from_trace(task.trace_tokens(m))
        g = len(m.path) - 1
        for cur, nxt in zip(written, written[1:]):
            assert any(c == cur and gg == g and par == nxt for c, _, gg, par in closed)
            g -= 1
    with pytest.raises(ConfigError, match="plan_order"):
        MazeTaskConfig(plan_order="middle")


def test_token_kinds_label_each_event_field():
    task = MazeTask(MazeTaskConfig(size=5, n_keys=1, plan_order="goal"), seed=0)
    m = task.maze(3)
    trace = task.trace_tokens(m)
    toks = [TRACE] + trace + task.plan_tokens(m.path)
    kinds = task.token_kinds(toks)
    assert len(kinds) == len(toks) and "other" not in kinds
    closes = [e for e in m.trace if e[0] == "close"]
    assert kinds.count("close") == kinds.count("close_cell") == kinds.count("parent") == len(closes)
    assert kinds.count("create") == kinds.count("create_g") == len(m.trace) - len(closes)
    assert kinds[:7] == ["TRACE", "have", "close", "close_cell", "close_g", "close_h", "parent"]
    assert kinds.count("plan_cell") == len(m.path) and kinds[-1] == "EOS" and kinds.count("PLAN") == 1
    v = task.vocab
    for t, k in zip(toks, kinds):  # each label matches the token's type
        if k.endswith("cell") or k == "parent":
            assert v.is_cell(t)
        if k.endswith(("_g", "_h")):
            assert v.is_cost(t)
    assert task.token_kinds([TRACE, CLOSE, 0]) == ["TRACE", "close", "close_cell"]  # truncated: labels by position
