"""The fast engine on the real SmolLM2-135M-Instruct (`make test-model`; skipped in `make test`): HFLM.generate
through the engine gives transformers' greedy text on a fixed chat-prompt set, and the same samples for a seed."""

import pytest
import torch

pytestmark = [pytest.mark.model, pytest.mark.slow]

QUESTIONS = ["Name a prime number.", "What is the capital of France?", "Write a haiku about rain.",
             "How do I boil an egg?", "Translate 'good morning' into Spanish.", "What is 12 times 12?",
             "Give me a synonym for happy.", "Is a tomato a fruit?"]


def test_engine_reproduces_transformers_on_smollm2():
    from lmlab.lm import load_lm

    torch.set_num_threads(1)
    lm = load_lm("default", batch_size=4)
    prompts = [lm.chat_prompt(q) for q in QUESTIONS]
    assert lm.engine() is not None
    lm.generate_with = "hf"
    ref = lm.generate(prompts, max_new_tokens=24)
    torch.manual_seed(0)
    ref_sampled = lm.generate(prompts[:4], max_new_tokens=16, temperature=0.8, top_p=0.95, seed=3)
    lm.generate_with = "engine"
    assert lm.generate(prompts, max_new_tokens=24) == ref
    assert lm.generate(prompts[:4], max_new_tokens=16, temperature=0.8, top_p=0.95, seed=3) == ref_sampled
    with lm.engine().queue(max_batch=4) as q:
        assert q.generate(prompts, max_new_tokens=24) == ref
    # prompt KV reuse: the chat header prefilled once, repeated prompts copied; the same greedy text
    from lmlab.lm.hf import common_prefix

    ids = [lm.encode(p) for p in prompts]
    with lm.engine().queue(max_batch=4, shared_prefix=common_prefix(ids)) as q:
        assert q.generate(prompts + prompts[-2:], max_new_tokens=24) == ref + ref[-2:]
    assert q.stats["prefix_hits"] >= len(prompts) and q.stats["prompt_hits"] >= 1
