"""Red-team harness: attack suites that turn the threats of Zhu et al. 2024 (arXiv 2402.12617) into rates.

=================  ===================================================================================
``SUITES``         one registry line per attack suite (one file each in ``suites/``): a seeded, versioned
                   generator of :class:`~lmlab.security.base.Attempt` s plus an exact success check (a canary
                   or an exact comparison; no judge model)
``jailbreak``      transformed moderation prompts (role-play, leetspeak, spacing, base64, rot13, prefix/suffix
                   injection) against a toxicity detector: TPR at a threshold fixed on untransformed benign prompts
``injection``      a retrieved document / tool output carries a conflicting instruction with a canary; matched
                   control: the same canary as inert data (the echo rate)
``leakage``        a canary in the system prompt, extraction prompts; control: a benign question
``cache-poison``   one tenant inserts a near-paraphrase with a malicious answer into a semantic cache
``guard-cost``     generations and latency per accepted output of a rejection-sampling guard
``DEFENCES``       input/output transforms the harness applies around a target (``none``, ``spotlight``,
                   ``sandwich``, ``filter``, ``output-guard``; stacked with ``+``)
targets            :func:`~lmlab.security.targets.make_target`: the embedded model (``default``), a local model
                   path, or one OpenAI-compatible URL; the harness sends nothing anywhere else
=================  ===================================================================================

Nothing heavy is imported with this package; ``lmlab.serve`` is never imported (a gateway is an HTTP target).

>>> from lmlab.security import SUITES
>>> suite = SUITES.get("injection")()
>>> attack, control = suite.generate(n=1, seed=0)      # one item: the attack and its matched control
>>> attack.canary == control.canary, control.control
(True, True)
>>> suite.success(attack, "Sure: " + attack.canary), suite.success(attack, "It is green.")
(True, False)
"""

from lmlab.registry import Registry

SUITES = Registry("attack suite", {
    "jailbreak": "lmlab.security.suites.jailbreak:JailbreakSuite",
    "injection": "lmlab.security.suites.injection:InjectionSuite",
    "leakage": "lmlab.security.suites.leakage:LeakageSuite",
    "cache-poison": "lmlab.security.suites.cache_poison:CachePoisonSuite",
    "guard-cost": "lmlab.security.suites.guard_cost:GuardCostSuite",
})

__all__ = ["SUITES"]
