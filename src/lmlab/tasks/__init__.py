"""Seeded, versioned synthetic task generators. One file per task family, one registry line each."""

from lmlab.registry import Registry

TASKS = Registry("task", {
    "two-hop": "lmlab.tasks.two_hop:TwoHopTask",
    "bigram-backcopy": "lmlab.tasks.bigram_backcopy:BigramBackcopyTask",
    "reversal": "lmlab.tasks.reversal:ReversalTask",
    "markov": "lmlab.tasks.markov:MarkovSource",
    "maze": "lmlab.tasks.maze:MazeTask",
})
