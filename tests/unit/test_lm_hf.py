"""The HF backend on a tiny random Llama built from a config: equal to plain transformers, padding-safe,
hooks removed on exceptions. No hub, no model wheel."""

import pytest
import torch

pytest.importorskip("transformers")

from lmlab.lm import LMError, load_lm  # noqa: E402
from lmlab.lm.hf import HFLM, decoder_layers  # noqa: E402
from lmlab.lm.testing import char_tokenizer, tiny_hf_lm, tiny_llama  # noqa: E402

PROMPTS = ["hello world", "a", "the cat sat on the mat.", "1, 2, 3"]


@pytest.fixture(scope="module")
def lm():
    return tiny_hf_lm(batch_size=8)


@pytest.mark.slow
def test_logits_equal_plain_transformers(lm):
    tok = char_tokenizer()
    plain = tiny_llama()  # same seed, same weights
    for p in PROMPTS:
        ids = tok(p, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            ref = plain(ids).logits[0, -1]
        torch.testing.assert_close(lm.next_token_logits([p])[0], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_padded_batch_equals_one_by_one(lm):
    batched = lm.next_token_logits(PROMPTS)
    single = torch.cat([lm.next_token_logits([p]) for p in PROMPTS])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)
    # and with the eager attention path (the one record() uses)
    eager = tiny_hf_lm(attn_implementation="eager")
    torch.testing.assert_close(eager.next_token_logits(PROMPTS), single, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_batches_split_by_batch_size(lm):
    small = tiny_hf_lm(batch_size=3)
    torch.testing.assert_close(small.next_token_logits(PROMPTS), lm.next_token_logits(PROMPTS), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_logprobs_match_next_token_logits_and_batching(lm):
    comps = [" x", "b", "!", ", 4"]
    batched = lm.logprobs(PROMPTS, comps, per_token=True)
    for p, c, lp in zip(PROMPTS, comps, batched):
        assert lp.shape == (len(c),)
        ids = lm.tokenizer(c, add_special_tokens=False)["input_ids"]
        expected = [torch.log_softmax(lm.next_token_logits([p + c[:j]])[0], -1)[ids[j]] for j in range(len(c))]
        torch.testing.assert_close(lp, torch.stack(expected), rtol=1e-4, atol=1e-4)
    sums = lm.logprobs(PROMPTS, comps)
    torch.testing.assert_close(sums, torch.stack([x.sum() for x in batched]))
    with pytest.raises(ValueError, match="completions"):
        lm.logprobs(PROMPTS, comps[:2])


@pytest.mark.slow
def test_generate_batched_equals_single_and_is_greedy(lm):
    batched = lm.generate(PROMPTS, max_new_tokens=4)
    single = [lm.generate([p], max_new_tokens=4)[0] for p in PROMPTS]
    assert batched == single
    # greedy: the first generated token is the argmax of next_token_logits
    for p, text in zip(PROMPTS, batched):
        first = int(lm.next_token_logits([p])[0].argmax())
        if first < 4:  # a special token: skipped when decoding
            continue
        assert lm.tokenizer(text, add_special_tokens=False)["input_ids"][:1] == [first]


@pytest.mark.slow
def test_sampling_is_seeded(lm):
    a = lm.generate(PROMPTS[:2], max_new_tokens=4, temperature=1.0, seed=3)
    b = lm.generate(PROMPTS[:2], max_new_tokens=4, temperature=1.0, seed=3)
    assert a == b


def test_record_shapes_and_restores_attention_impl(lm):
    before = lm.model.config._attn_implementation
    with lm.record(attn=True, values=True, resid=True) as rec:
        logits, mask = lm.forward(["hello there"])
    T = mask.shape[1]
    assert set(rec.attn) == {0, 1}
    assert rec.attn[0].shape == (1, 4, T, T)
    torch.testing.assert_close(rec.attn[1].sum(-1), torch.ones(1, 4, T))
    assert rec.values[0].shape == (1, T, 2, 8)  # 2 KV heads of d_head 8
    assert rec.resid[1].shape == (1, T, 32)
    assert lm.model.config._attn_implementation == before
    # the recorded run's logits equal an unrecorded one
    torch.testing.assert_close(logits[0, -1], lm.next_token_logits(["hello there"])[0], rtol=1e-4, atol=1e-5)


def test_record_layers_subset_and_residual_is_hidden_state(lm):
    with lm.record(attn=False, resid=True, layers=[-1]) as rec:
        lm.forward(["abc"])
    assert list(rec.resid) == [1]
    ids = lm.tokenizer("abc", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hs = lm.model(ids, output_hidden_states=True).hidden_states
    # hidden_states[-1] has the final norm applied in HF Llama; the layer-1 output is the pre-norm stream
    torch.testing.assert_close(lm.model.model.norm(rec.resid[1]), hs[-1], rtol=1e-4, atol=1e-5)


def _n_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_are_gone_after_an_exception(lm):
    before = _n_hooks(lm.model)
    impl = lm.model.config._attn_implementation
    with pytest.raises(RuntimeError, match="boom"):
        with lm.record(attn=True, values=True, resid=True):
            assert _n_hooks(lm.model) > before
            lm.forward(["abc"])
            raise RuntimeError("boom")
    assert _n_hooks(lm.model) == before
    assert lm.model.config._attn_implementation == impl


def test_chat_prompt_without_template_is_a_transcript(lm):
    text = lm.chat_prompt("hi", system="be brief")
    assert text == "system: be brief\nuser: hi\nassistant:"


def test_hf_directory_round_trip(tmp_path, lm):
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    again = load_lm(tmp_path)
    assert isinstance(again, HFLM)
    torch.testing.assert_close(again.next_token_logits(PROMPTS), lm.next_token_logits(PROMPTS), rtol=1e-5, atol=1e-5)
    assert len(decoder_layers(again.model)) == 2


def test_bad_paths_give_one_line_errors(tmp_path):
    with pytest.raises(LMError, match="does not exist"):
        load_lm(tmp_path / "nope")
    with pytest.raises(LMError, match="no config.json"):
        load_lm(tmp_path)


def test_gguf_dequantized_model_is_not_flagged_quantized():
    """transformers 5.24 de-quantizes a Llama GGUF into float nn.Linear weights but leaves it flagged as quantized,
    and the Trainer (TRL's DPOTrainer) then refuses to train it; load_gguf drops the flags (first seen on a fresh
    machine: the first safety-tune after install failed, later ones loaded the float cache and worked)."""
    from transformers.quantizers.quantizer_gguf import GgufHfQuantizer
    from transformers.trainer_utils import validate_quantization_for_training
    from transformers.utils.quantization_config import GgufConfig

    from lmlab.lm.gguf import _drop_quantization_state

    model = tiny_llama()
    quantizer = GgufHfQuantizer(GgufConfig())
    model.hf_quantizer, model.is_quantized, model.config.quantization_config = quantizer, True, quantizer.quantization_config
    model.config._is_quantized = True
    with pytest.raises(ValueError, match="purely quantized"):
        validate_quantization_for_training(model)  # what the Trainer does
    _drop_quantization_state(model)
    validate_quantization_for_training(model)
    assert model.hf_quantizer is None and not model.is_quantized and not hasattr(model.config, "quantization_config")
    # a model that still holds packed (integer) weights keeps its flags
    packed = tiny_llama()
    packed.register_buffer("blocks", torch.zeros(4, dtype=torch.uint8))
    packed.hf_quantizer, packed.is_quantized = quantizer, True
    _drop_quantization_state(packed)
    assert packed.is_quantized and packed.hf_quantizer is quantizer
