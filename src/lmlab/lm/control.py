"""Negative controls for studies of pretrained models: the same architecture with its learning removed.

:func:`randomize_weights` re-initialises every weight of a trainable LM in place with the model's own
initialiser (``transformers``' ``PreTrainedModel.init_weights``, the distribution the model started from
before pretraining), under a fixed seed. The tokenizer, the architecture and every code path stay the same,
so a study's claim that still holds on such a model is a property of the data or the metric, not of what the
model learned. The model's fingerprint changes with its weights, so no cache keyed by it is reused.

>>> from lmlab.lm.testing import tiny_hf_lm
>>> lm = tiny_hf_lm()
>>> before = lm.fingerprint
>>> _ = randomize_weights(lm, seed=1)
>>> lm.fingerprint != before
True
"""

from __future__ import annotations

from typing import Any

from lmlab.lm.base import require


def randomize_weights(lm: Any, seed: int = 0) -> Any:
    """Re-initialise ``lm``'s weights in place (``needs=("trainable",)``); returns ``lm``."""
    import torch

    require(lm, ("trainable",))
    model = lm.hf_model
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        # transformers (5.x) marks loaded tensors and modules `_is_hf_initialized`, and its initialisers skip
        # marked ones: clear the marks, or re-initialising a pretrained model leaves its weights unchanged
        for obj in [*model.modules(), *model.parameters(), *model.buffers()]:
            if getattr(obj, "_is_hf_initialized", False):
                obj._is_hf_initialized = False
        with torch.no_grad():
            # transformers' own initialiser for every module (normal(0, initializer_range) for linear and
            # embedding weights, ones for norms); tied weights are re-tied by it
            for module in model.modules():
                model._init_weights(module)
            if hasattr(model, "tie_weights"):
                model.tie_weights()
    finally:
        torch.random.set_rng_state(state)
    model.eval()
    return lm
