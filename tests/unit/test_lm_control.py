"""randomize_weights really re-initialises a model loaded from disk (from_pretrained marks its tensors)."""

import pytest

pytest.importorskip("transformers")


def test_randomize_weights_changes_a_loaded_model(tmp_path):
    import torch

    from lmlab.lm import load_lm
    from lmlab.lm.control import randomize_weights
    from lmlab.lm.testing import tiny_model_dir

    lm = load_lm(str(tiny_model_dir(tmp_path / "m", ["Anna", "Leo", "the", "boss"])), needs=("trainable",))
    before = {n: p.detach().clone() for n, p in lm.hf_model.named_parameters()}
    fp = lm.fingerprint
    randomize_weights(lm, seed=0)
    after = dict(lm.hf_model.named_parameters())
    changed = [n for n, p in before.items() if p.dim() == 2 and not torch.equal(p, after[n].detach())]
    assert changed and len(changed) == sum(p.dim() == 2 for p in before.values())
    assert lm.fingerprint != fp
