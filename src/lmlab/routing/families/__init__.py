"""Task families of the model zoo: each turns one lmlab task into training batches and checkable questions.

One file and one registry line per family. A new family (e.g. the maze task of issue 6) is a class with
``name``, ``version``, ``n_tokens``, ``train_batch`` and ``questions`` (see :mod:`.base`) and one line here;
the zoo gives it its own id range of the shared vocabulary and a task-prefix token.
"""

from lmlab.registry import Registry

FAMILIES = Registry("zoo family", {
    "two-hop": "lmlab.routing.families.two_hop:TwoHopFamily",
    "reversal": "lmlab.routing.families.reversal:ReversalFamily",
    "markov": "lmlab.routing.families.markov:MarkovFamily",
    "bigram-backcopy": "lmlab.routing.families.bigram_backcopy:BigramBackcopyFamily",
})
