"""Task families of the model zoo: each turns one lmlab task into training batches and checkable questions.

One file and one registry line per family. A new family (e.g. the maze task of issue 6) is a class with
``name``, ``version``, ``n_tokens``, ``train_batch`` and ``questions`` (see :mod:`.base`) and one line here;
the zoo gives it its own id range of the shared vocabulary and a task-prefix token.
"""

from lmlab.registry import Registry

FAMILIES = Registry("zoo family", {
    "two-hop": "lmlab.zoo.families.two_hop:TwoHopFamily",
    "reversal": "lmlab.zoo.families.reversal:ReversalFamily",
    "markov": "lmlab.zoo.families.markov:MarkovFamily",
    "bigram-backcopy": "lmlab.zoo.families.bigram_backcopy:BigramBackcopyFamily",
})
