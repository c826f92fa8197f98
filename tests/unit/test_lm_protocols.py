"""Capabilities are declared (lmlab.lm.protocols), checked at load time, and nothing outside lmlab.lm
reaches past them."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lmlab.lm import LMError, LogitsLM, TextLM, TrainableLM, WeightsLM, load_lm, require
from lmlab.lm.dummy import DummyLM

SRC = Path(__file__).parents[2] / "src" / "lmlab"


@pytest.fixture(scope="module")
def lm():
    from lmlab.lm.testing import tiny_hf_lm

    return tiny_hf_lm(seed=0, batch_size=4)


def test_load_time_refusal_is_one_line_naming_backend_and_alternative():
    with pytest.raises(LMError) as e:
        load_lm("http://127.0.0.1:9/v1#m", needs=("logits",))
    msg = str(e.value)
    assert "\n" not in msg and "OpenAI-compatible HTTP backend" in msg and "'logits'" in msg
    assert "use the default model, a .gguf file or a Hugging Face directory" in msg
    with pytest.raises(LMError, match="DummyLM .*'weights'"):
        load_lm("dummy", needs=("weights",))
    with pytest.raises(LMError, match="unknown LM capability 'weigths'"):
        load_lm("dummy", needs=("weigths",))
    assert isinstance(load_lm("dummy", needs=("text", "logits")), DummyLM)
    with pytest.raises(LMError, match="'trainable'"):
        require(DummyLM(), ("trainable",))


def test_backends_satisfy_the_protocols_they_declare(lm):
    from lmlab.lm.openai_api import OpenAILM

    for obj in (lm, DummyLM(), OpenAILM("http://127.0.0.1:9/v1")):
        assert isinstance(obj, TextLM)
        for cap, proto in (("logits", LogitsLM), ("weights", WeightsLM), ("trainable", TrainableLM)):
            if cap in obj.capabilities:
                assert isinstance(obj, proto), (type(obj).__name__, cap)
    assert lm.capabilities == {"text", "logits", "weights", "trainable"}
    assert DummyLM.capabilities == {"text", "logits"} and OpenAILM.capabilities == {"text"}


def test_output_projections_are_the_transposed_o_proj(lm):
    w = lm.output_projections()
    assert len(w) == lm.n_layers == 2
    layer = lm.hf_model.model.layers[1]
    torch.testing.assert_close(w[1], layer.self_attn.o_proj.weight.detach().T)
    assert w[0].shape == (4 * 8, 32)  # (n_heads * d_head, d_model)


def test_trainable_exposes_the_transformers_objects(lm):
    import transformers

    assert isinstance(lm.hf_model, transformers.PreTrainedModel) and lm.hf_tokenizer is lm.tokenizer
    ids = torch.tensor([lm.encode("abc")])
    loss = lm.hf_model(input_ids=ids, labels=ids).loss  # what peft / TRL do with it
    assert torch.isfinite(loss)


def test_iter_last_logits_equals_plain_forward_in_any_batching(lm):
    prompts = [lm.chat_prompt(p) for p in ("hello there", "x", "what is the capital of france?")]
    seqs = [lm.encode(p) for p in prompts]
    got = {}
    for idx, rows in lm.iter_last_logits(seqs, batch_size=2):
        got.update({i: r for i, r in zip(idx, rows)})
    for i, s in enumerate(seqs):
        with torch.no_grad():
            ref = lm.hf_model(input_ids=torch.tensor([s])).logits[0, -1]
        torch.testing.assert_close(got[i], ref, rtol=1e-5, atol=1e-5)


def test_caching_lm_answers_from_the_cache(lm, tmp_path):
    from lmlab.lm.caching import CachingLM

    c = CachingLM(lm, kind="t", root=tmp_path)
    prompts, comps = ["hello", "abc"], [" world", "d"]
    np.testing.assert_allclose(c.logprobs(prompts, comps).numpy(), lm.logprobs(prompts, comps).numpy(), atol=1e-5)
    torch.testing.assert_close(c.next_token_logits(prompts), lm.next_token_logits(prompts), rtol=1e-5, atol=1e-5)
    again = CachingLM(lm, kind="t", root=tmp_path)
    again.logprobs(prompts, comps)
    again.next_token_logits(prompts[:1])
    assert again.stats == {"computed": 0, "cached": 3}
    assert again.generate(["ab"], max_new_tokens=2) == lm.generate(["ab"], max_new_tokens=2)  # passed through
    other = CachingLM(DummyLM(seed=1), kind="t", root=tmp_path)
    other.next_token_logits(prompts[:1])
    assert other.stats["computed"] == 1  # another model: its own key


FORBIDDEN = [
    (r"decoder_layers\(", "decoder layers of an HF model"),
    # (a module name as a quoted string, e.g. a LoRA target list for peft, is configuration, not a reach inside)
    (r"(?<![\"'])\bo_proj\b(?![\"'])", "an attention module's output projection"),
    (r"_keeps_logits|\bpad_left\b|_forward_after_prefix|_prefill\b", "HFLM internals"),
    # (not ``cfg.lm.model``, the config key, nor the ``lm.model`` words of an error message)
    (r"(?<![\w.'\"`])lm\.model\b(?![\w'\"`=])", "the wrapped transformers model (use hf_model with needs=('trainable',))"),
    (r"hasattr\([^)]*[\"'](forward_ids|encode|model|record)[\"']", "capability probing (declare needs=...)"),
    (r"(?<!self)\._emb\(\)", "a detector's private embedder"),
]


def test_nothing_outside_lmlab_lm_reaches_past_it():
    bad = []
    for path in SRC.rglob("*.py"):
        if path.is_relative_to(SRC / "lm"):
            continue
        text = path.read_text()
        for pattern, what in FORBIDDEN:
            for m in re.finditer(pattern, text):
                line = text.count("\n", 0, m.start()) + 1
                bad.append(f"{path.relative_to(SRC)}:{line}: {what}")
    assert not bad, "\n".join(bad)
