"""Keys-finding mazes with an A* search trace (Token Assorted, Su et al. 2025, arXiv 2502.03275).

Version ``maze/2`` (the trace carries costs and parent pointers; the grids are those of ``maze/1``). A maze is an ``n x n`` grid of cells: empty, wall, start, goal, ``n_keys``
coloured keys and doors of the same colours. Walking onto a key picks it up (keys are kept); a door
of colour c can be entered only once key c is held. The layout is built so that the keys are needed
and must be taken in order: ``n_keys`` straight barriers (full rows or columns of wall) split the
grid into ``n_keys + 1`` regions, barrier i has one door of colour i, key i lies in region i, the
start in region 0 and the goal in the last region; random walls (density ``wall_density``) fill the
rest. A drawn layout that cannot be solved is drawn again from the same generator, so every maze
returned is solvable (``tests/unit/test_maze.py`` checks thousands of seeds).

**Solver.** A* over states (cell, keys held) with the Manhattan distance to the goal as heuristic
(admissible: keys only ever open more cells), ties broken by smaller h, then first in. The trace is
the Searchformer-style list of search events with costs and parent pointers: ``close pos g h parent`` for each
expanded state (g: steps from the start, h: the heuristic, parent: the cell it was reached from; the start is its
own parent), preceded by a key-set token ``have_m`` whenever the held keys differ from those of the previous
expansion, and ``create pos g h`` for each child put on the frontier (or whose g improved there). The trace
determines the plan: :meth:`MazeTask.plan_from_trace` follows the parent pointers back from the goal, one look-up
per step (``tests/unit/test_maze.py`` checks it gives the solver's path). The answer is the
shortest path as a list of cells, start and goal included (a cell may repeat: a path can walk back
from a key).

**Tokens** (one token per cell, row-major, so the prompt is the grid itself)::

    PAD BOS TRACE PLAN EOS BOL EOL create close | cell types (empty wall start goal key_c.. door_c..) |
    key sets have_0 .. have_{2^k - 1} | positions pos_0 .. pos_{n*n - 1} | costs c0 .. c{n*n*2^k - 1}

    answer-only:  BOS grid(n*n) PLAN path EOS
    text trace :  BOS grid(n*n) TRACE trace PLAN path EOS

(``plan_order="goal"`` writes the path goal first: each plan cell is then the parent pointer of the previous cell's
expansion in the trace.)

(``BOL``/``EOL`` wrap latent codes; the token-assorted study appends the codes after the vocabulary.)

**Validator.** :func:`validate_path` checks a proposed path cell by cell: it must start at the start,
move one orthogonal step at a time (no teleports), stay in the grid, never enter a wall, enter a door
only with its key, and end on the goal. It returns ``(ok, reason)``. Generated answers are judged by
it, never by comparing strings with the solver's path.

>>> task = MazeTask(MazeTaskConfig(size=5, n_keys=1), seed=0)
>>> m = task.maze(2)
>>> print(m.render())
k # # . .
. . . . S
. # . . .
# # # # A
# # # G .
>>> m.path  # the solver's answer: to the key, back, through the door, to the goal
[(1, 4), (1, 3), (1, 2), (1, 1), (1, 0), (0, 0), (1, 0), (1, 1), (1, 2), (2, 2), (2, 3), (2, 4), (3, 4), (4, 4), (4, 3)]
>>> validate_path(m, m.path)
(True, 'ok')
>>> validate_path(m, [(1, 4), (2, 4), (3, 4), (4, 4), (4, 3)])
(False, 'step 2 enters door 0 at (3, 4) without key 0')
>>> task.vocab.decode(task.tokens(m, "trace")[26:37])
['TRACE', 'have_0', 'close', 'pos_9', 'c0', 'c4', 'pos_9', 'create', 'pos_4', 'c1', 'c5']
>>> task.plan_from_trace(m, task.trace_tokens(m)) == m.path
True
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from lmlab.config import Config, ConfigError

VERSION = "maze/2"
Cell = tuple[int, int]
PAD, BOS, TRACE, PLAN, EOS, BOL, EOL, CREATE, CLOSE = range(9)
SPECIALS = ("PAD", "BOS", "TRACE", "PLAN", "EOS", "BOL", "EOL", "create", "close")
EMPTY, WALL, START, GOAL = 0, 1, 2, 3  # cell codes; key c is 4 + c, door c is 4 + n_keys + c
EVAL_STREAM = 2**31  # maze indices for evaluation live far from the training ones


@dataclass(frozen=True)
class MazeTaskConfig(Config):
    size: int = 6  # the grid is size x size cells
    n_keys: int = 1  # key/door colours, one barrier each
    wall_density: float = 0.2  # share of the non-barrier cells made wall (before the solvability check)
    max_tries: int = 1000  # redraws of one maze before giving up (never reached in practice)
    # "manhattan": A*; "none": h = 0, which with unit steps and first-in ties is breadth-first search
    heuristic: Literal["manhattan", "none"] = "manhattan"
    # how the plan is written after PLAN: "start" (start ... goal) or "goal" (goal ... start, the order in which the
    # trace's parent pointers lead, so each plan cell is one look-up of the previous one's parent in the trace);
    # parse_plan always returns the path start first
    plan_order: Literal["start", "goal"] = "start"

    def validate(self) -> None:
        if not 0 <= self.n_keys <= 4:
            raise ConfigError(f"MazeTaskConfig.n_keys must be in 0..4, got {self.n_keys}")
        need = 2 * self.n_keys + 1  # each region needs a line of cells, each barrier one
        if self.size < max(3, need) or self.size > 16:
            raise ConfigError(
                f"MazeTaskConfig.size must be in {max(3, need)}..16 for n_keys={self.n_keys} "
                f"(each of the {self.n_keys + 1} regions and {self.n_keys} barriers needs a line), got {self.size}"
            )
        if not 0 <= self.wall_density < 0.6:
            raise ConfigError(f"MazeTaskConfig.wall_density must be in [0, 0.6), got {self.wall_density}")
        if self.max_tries < 1:
            raise ConfigError(f"MazeTaskConfig.max_tries must be >= 1, got {self.max_tries}")
        if self.plan_order not in ("start", "goal"):
            raise ConfigError(f"MazeTaskConfig.plan_order must be 'start' or 'goal', got {self.plan_order!r}")


@dataclass
class Maze:
    """One maze with the solver's trace and answer. ``grid[r, c]`` holds the cell codes above."""

    grid: np.ndarray
    n_keys: int
    start: Cell
    goal: Cell
    # search events in order: ("close", cell, keys, g, h, parent cell) for an expansion, ("create", cell, keys, g, h)
    # for a child put on (or improved in) the frontier
    trace: list[tuple] = field(default_factory=list)
    path: list[Cell] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.grid.shape[0]

    def key_colour(self, cell: Cell) -> int | None:
        v = int(self.grid[cell])
        return v - 4 if 4 <= v < 4 + self.n_keys else None

    def door_colour(self, cell: Cell) -> int | None:
        v = int(self.grid[cell])
        return v - 4 - self.n_keys if v >= 4 + self.n_keys else None

    def render(self, path: list[Cell] | None = None) -> str:
        """Text picture: S start, G goal, # wall, k/l/m/n keys, A/B/C/D doors, * path."""
        on_path = set(path or [])
        rows = []
        for r in range(self.size):
            row = []
            for c in range(self.size):
                v = int(self.grid[r, c])
                ch = {EMPTY: ".", WALL: "#", START: "S", GOAL: "G"}.get(v)
                if ch is None:
                    ch = "klmn"[v - 4] if v < 4 + self.n_keys else "ABCD"[v - 4 - self.n_keys]
                if ch == "." and (r, c) in on_path:
                    ch = "*"
                row.append(ch)
            rows.append(" ".join(row))
        return "\n".join(rows)


# ----------------------------------------------------------------------------------------------
# Moves, solver, validator
# ----------------------------------------------------------------------------------------------
def _step(maze: Maze, cell: Cell, keys: int) -> tuple[bool, int, str]:
    """Can the agent holding ``keys`` stand on ``cell``? Returns (ok, keys after, reason if not)."""
    r, c = cell
    n = maze.size
    if not (0 <= r < n and 0 <= c < n):
        return False, keys, f"leaves the grid at {cell}"
    if maze.grid[cell] == WALL:
        return False, keys, f"enters a wall at {cell}"
    door = maze.door_colour(cell)
    if door is not None and not keys >> door & 1:
        return False, keys, f"enters door {door} at {cell} without key {door}"
    key = maze.key_colour(cell)
    return True, keys | (1 << key) if key is not None else keys, ""


def solve(maze: Maze, heuristic: str = "manhattan") -> tuple[list[tuple], list[Cell]] | None:
    """A* over (cell, keys held); returns (search events in order, shortest path) or None if unsolvable.
    ``heuristic="none"`` makes it breadth-first search.

    Events: ``("close", cell, keys, g, h, parent_cell)`` when a state is expanded (the start is its own parent) and
    ``("create", cell, keys, g, h)`` when a child is put on the frontier or its cost g improves there."""
    def h(cell: Cell) -> int:
        if heuristic == "none":
            return 0
        return abs(cell[0] - maze.goal[0]) + abs(cell[1] - maze.goal[1])

    start = (maze.start, 0)
    tie = itertools.count()
    frontier = [(h(maze.start), h(maze.start), next(tie), start)]
    g = {start: 0}
    parent: dict[tuple[Cell, int], tuple[Cell, int] | None] = {start: None}
    closed: set[tuple[Cell, int]] = set()
    events: list[tuple] = []
    while frontier:
        _, _, _, state = heapq.heappop(frontier)
        if state in closed:
            continue
        closed.add(state)
        cell, keys = state
        par = parent[state]
        events.append(("close", cell, keys, g[state], h(cell), cell if par is None else par[0]))
        if cell == maze.goal:
            path = []
            node: tuple[Cell, int] | None = state
            while node is not None:
                path.append(node[0])
                node = parent[node]
            return events, path[::-1]
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            nxt = (cell[0] + dr, cell[1] + dc)
            ok, nkeys, _ = _step(maze, nxt, keys)
            child = (nxt, nkeys)
            if ok and child not in closed and g[state] + 1 < g.get(child, 1 << 30):
                g[child] = g[state] + 1
                parent[child] = state
                heapq.heappush(frontier, (g[child] + h(nxt), h(nxt), next(tie), child))
                events.append(("create", nxt, nkeys, g[child], h(nxt)))
    return None


def validate_path(maze: Maze, path: list[Cell]) -> tuple[bool, str]:
    """Is ``path`` (a list of (row, col) cells, start included) a legal walk from start to goal?"""
    if not path:
        return False, "empty path"
    if tuple(path[0]) != maze.start:
        return False, f"starts at {tuple(path[0])}, not at the start {maze.start}"
    keys = 0
    for i in range(1, len(path)):
        a, b = tuple(path[i - 1]), tuple(path[i])
        if abs(a[0] - b[0]) + abs(a[1] - b[1]) != 1:
            return False, f"step {i} jumps from {a} to {b} (not one orthogonal step)"
        ok, keys, why = _step(maze, b, keys)
        if not ok:
            return False, f"step {i} {why}"
    if tuple(path[-1]) != maze.goal:
        return False, f"ends at {tuple(path[-1])}, not at the goal {maze.goal}"
    return True, "ok"


# ----------------------------------------------------------------------------------------------
# Tokens
# ----------------------------------------------------------------------------------------------
class MazeVocab:
    """Token ids of one maze size and key count (see the module docstring for the layout)."""

    def __init__(self, size: int, n_keys: int):
        self.size, self.n_keys = size, n_keys
        self.cell_type0 = len(SPECIALS)
        self.n_cell_types = 4 + 2 * n_keys
        self.keyset0 = self.cell_type0 + self.n_cell_types
        self.pos0 = self.keyset0 + 2**n_keys
        self.cost0 = self.pos0 + size * size
        self.n_costs = size * size * 2**n_keys  # g < number of states; h <= 2 (size - 1)
        self.size_ = self.cost0 + self.n_costs
        types = ["empty", "wall", "start", "goal"] + [f"key_{c}" for c in range(n_keys)] + [f"door_{c}" for c in range(n_keys)]
        self.names = (list(SPECIALS) + types + [f"have_{m}" for m in range(2**n_keys)]
                      + [f"pos_{i}" for i in range(size * size)] + [f"c{i}" for i in range(self.n_costs)])

    def __len__(self) -> int:
        return self.size_

    def cell(self, cell: Cell) -> int:
        return self.pos0 + cell[0] * self.size + cell[1]

    def cost(self, c: int) -> int:
        return self.cost0 + c

    def is_cell(self, tok: int) -> bool:
        return self.pos0 <= tok < self.cost0

    def is_cost(self, tok: int) -> bool:
        return self.cost0 <= tok < self.size_

    def to_cell(self, tok: int) -> Cell:
        i = tok - self.pos0
        return (i // self.size, i % self.size)

    def decode(self, tokens: list[int] | np.ndarray) -> list[str]:
        return [self.names[t] if 0 <= t < len(self.names) else f"z_{t - len(self.names)}" for t in tokens]


class MazeTask:
    """Seeded maze generator: ``maze(i)`` is a pure function of ``(seed, i)``."""

    version = VERSION

    def __init__(self, cfg: MazeTaskConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = seed
        self.vocab = MazeVocab(cfg.size, cfg.n_keys)
        self.prompt_len = 1 + cfg.size * cfg.size  # BOS + grid

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, index]))

    def maze(self, index: int) -> Maze:
        rng = self.rng(index)
        for _ in range(self.cfg.max_tries):
            m = self._draw(rng)
            solved = solve(m, self.cfg.heuristic)
            if solved is not None:
                m.trace, m.path = solved
                return m
        raise RuntimeError(f"no solvable maze in {self.cfg.max_tries} tries; lower MazeTaskConfig.wall_density")

    def mazes(self, start: int, n: int) -> list[Maze]:
        return [self.maze(start + i) for i in range(n)]

    def eval_mazes(self, n: int) -> list[Maze]:
        return self.mazes(EVAL_STREAM, n)

    def _draw(self, rng: np.random.Generator) -> Maze:
        n, k = self.cfg.size, self.cfg.n_keys
        grid = np.zeros((n, n), dtype=np.int64)
        # barrier lines: k distinct rows in 1..n-2, no two adjacent (each region keeps a line of its own)
        lines: list[int] = []
        while len(lines) < k:
            cand = sorted(rng.choice(np.arange(1, n - 1), size=k, replace=False).tolist())
            if all(b - a >= 2 for a, b in zip(cand, cand[1:])):
                lines = cand
        region = np.zeros(n, dtype=np.int64)  # region index of each row
        for b in lines:
            region[b + 1:] += 1
        walls = rng.random((n, n)) < self.cfg.wall_density
        grid[walls] = WALL
        for i, b in enumerate(lines):
            grid[b, :] = WALL
            grid[b, rng.integers(n)] = 4 + k + i  # door i
        barrier = np.zeros(n, dtype=bool)
        barrier[lines] = True

        def free_cell(reg: int, taken: set[Cell]) -> Cell:
            rows = [r for r in range(n) if region[r] == reg and not barrier[r]]
            cells = [(r, c) for r in rows for c in range(n) if (r, c) not in taken]
            return cells[rng.integers(len(cells))]

        taken: set[Cell] = set()
        start = free_cell(0, taken)
        taken.add(start)
        for i in range(k):
            key = free_cell(i, taken)
            taken.add(key)
            grid[key] = 4 + i
        goal = free_cell(k, taken)
        grid[start], grid[goal] = START, GOAL
        # random orientation: transpose and/or flips keep the structure
        if rng.random() < 0.5:
            grid, start, goal = grid.T.copy(), start[::-1], goal[::-1]
        if rng.random() < 0.5:
            grid, start, goal = grid[::-1].copy(), (n - 1 - start[0], start[1]), (n - 1 - goal[0], goal[1])
        if rng.random() < 0.5:
            grid, start, goal = grid[:, ::-1].copy(), (start[0], n - 1 - start[1]), (goal[0], n - 1 - goal[1])
        return Maze(grid, k, (int(start[0]), int(start[1])), (int(goal[0]), int(goal[1])))

    # -- tokens ------------------------------------------------------------------------------
    def prompt(self, maze: Maze) -> list[int]:
        return [BOS] + (self.vocab.cell_type0 + maze.grid.ravel()).tolist()

    def trace_tokens(self, maze: Maze) -> list[int]:
        """The search trace (without the TRACE marker): ``close pos g h parent`` per expansion, preceded by the key-set
        token when the keys held differ from the previous expansion's, and ``create pos g h`` per child."""
        v = self.vocab
        out, prev = [], None
        for ev in maze.trace:
            if ev[0] == "close":
                _, cell, keys, g, h, par = ev
                if keys != prev:
                    out.append(v.keyset0 + keys)
                    prev = keys
                out += [CLOSE, v.cell(cell), v.cost(g), v.cost(h), v.cell(par)]
            else:
                _, cell, keys, g, h = ev
                out += [CREATE, v.cell(cell), v.cost(g), v.cost(h)]
        return out

    def closed_from_trace(self, tokens: list[int]) -> list[tuple[Cell, int, int, Cell]] | None:
        """The expansions written in a trace, in order: (cell, keys held, g, parent cell); None if malformed."""
        v, out, keys, i = self.vocab, [], 0, 0
        try:
            while i < len(tokens):
                t = tokens[i]
                if v.keyset0 <= t < v.pos0:
                    keys, i = t - v.keyset0, i + 1
                elif t == CLOSE:
                    cell, g, h, par = tokens[i + 1:i + 5]
                    if not (v.is_cell(cell) and v.is_cell(par) and v.is_cost(g) and v.is_cost(h)):
                        return None
                    out.append((v.to_cell(cell), keys, g - v.cost0, v.to_cell(par)))
                    i += 5
                elif t == CREATE:
                    i += 4
                else:
                    return None
        except ValueError:  # a truncated event
            return None
        return out

    def token_kinds(self, tokens: list[int]) -> list[str]:
        """The role of each token of a well-formed trace-then-plan continuation (``TRACE`` marker optional), read by
        position in its event: ``have`` (key set), ``close`` / ``create`` / ``PLAN`` (the keyword that starts the
        next event), ``close_cell``, ``close_g``, ``close_h``, ``parent``, ``create_cell``, ``create_g``,
        ``create_h``, then ``plan_cell`` and ``EOS``; ``other`` for anything else (e.g. a malformed generation).
        Used to say which kind of token a trace model gets wrong."""
        v, kinds, left, tail = self.vocab, [], [], False
        for t in tokens:
            if left:
                kinds.append(left.pop(0))
            elif tail:
                kinds.append("plan_cell" if v.is_cell(t) else "EOS" if t == EOS else "other")
            elif t == TRACE:
                kinds.append("TRACE")
            elif v.keyset0 <= t < v.pos0:
                kinds.append("have")
            elif t == CLOSE:
                kinds.append("close")
                left = ["close_cell", "close_g", "close_h", "parent"]
            elif t == CREATE:
                kinds.append("create")
                left = ["create_cell", "create_g", "create_h"]
            elif t == PLAN:
                kinds.append("PLAN")
                tail = True
            else:
                kinds.append("other")
        return kinds

    def plan_from_trace(self, maze: Maze, tokens: list[int]) -> list[Cell] | None:
        """The plan a trace determines: from the last expansion (the goal) follow the parent pointers back to the start.
        The parent of state (c, K) with cost g is the first expansion of its parent cell with cost g - 1 and keys K,
        or K without the key lying on c (picked up by the step onto c). One look-up per step, so a model that has
        written the trace can read the plan off it (backwards). None if the trace does not end at the goal or a
        pointer leads nowhere."""
        closed = self.closed_from_trace(tokens)
        if not closed or closed[-1][0] != maze.goal:
            return None
        cell, keys, g, par = closed[-1]
        path = [cell]
        while g > 0:
            key = maze.key_colour(cell)
            allowed = {keys, keys & ~(1 << key)} if key is not None else {keys}
            nxt = next((e for e in closed if e[0] == par and e[2] == g - 1 and e[1] in allowed), None)
            if nxt is None:
                return None
            cell, keys, g, par = nxt
            path.append(cell)
        return path[::-1] if cell == maze.start else None

    def plan_tokens(self, path: list[Cell]) -> list[int]:
        """``PLAN`` then the path's cells in ``cfg.plan_order`` (start first, or goal first), then ``EOS``."""
        cells = path[::-1] if self.cfg.plan_order == "goal" else path
        return [PLAN] + [self.vocab.cell(c) for c in cells] + [EOS]

    def tokens(self, maze: Maze, mode: Literal["answer", "trace"]) -> list[int]:
        """The whole training sequence: answer-only or with the text trace."""
        trace = [TRACE] + self.trace_tokens(maze) if mode == "trace" else []
        return self.prompt(maze) + trace + self.plan_tokens(maze.path)

    def parse_plan(self, generated: list[int]) -> list[Cell] | None:
        """The path in a generated continuation, start first: the cells between the first PLAN and the next EOS, reversed
        when ``cfg.plan_order`` is "goal" (None if absent or if anything but cells is there, or no EOS comes)."""
        if PLAN not in generated:
            return None
        rest = generated[generated.index(PLAN) + 1:]
        if EOS not in rest:
            return None
        rest = rest[: rest.index(EOS)]
        if not rest or not all(self.vocab.is_cell(t) for t in rest):
            return None
        path = [self.vocab.to_cell(t) for t in rest]
        return path[::-1] if self.cfg.plan_order == "goal" else path
