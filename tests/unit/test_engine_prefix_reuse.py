"""Prompt KV reuse in the engine's queue (lmlab.lm.engine): a shared prefix prefilled once and identical
prompts copied give the same logits and texts as prefilling every prompt, and the counters show the reuse.
A tiny random Llama with a character tokenizer (one token per character); no hub, no model wheel."""

import pytest
import torch

pytest.importorskip("transformers", reason="needs the llm extra (the tiny Llama is a transformers model): pip install -e '.[llm]'")

from lmlab.lm.engine import DecodeEngine  # noqa: E402
from lmlab.lm.hf import common_prefix  # noqa: E402
from lmlab.lm.testing import tiny_hf_lm  # noqa: E402
from lmlab.selfimprove.generation import generate_rows  # noqa: E402

HEAD = "Review the user's question and the response with the additive five point rubric below. "
TAILS = ["hello world", "the cat sat on the mat.", "hello world", "a", "hello world", "1, 2, 3,", "the cat sat on the mat."]
# prompts after the shared head (three repeats of one, two of another), and two that do not start with it
PROMPTS = [HEAD + t for t in TAILS] + ["no shared head here", "q"]
NEW = 12


@pytest.fixture(scope="module")
def lm():
    return tiny_hf_lm(batch_size=3)


@pytest.fixture(scope="module")
def eng(lm):
    return DecodeEngine(lm.model, lm.tokenizer, "float32", encode=lm.encode)


def prefix_ids(lm):
    return common_prefix([lm.encode(p) for p in PROMPTS[:len(TAILS)]])


def run_queue(eng, lm, reuse, max_batch=3, prompt_cache=4, **kw):
    with eng.queue(max_batch=max_batch, max_pending=64, max_len=256, shared_prefix=prefix_ids(lm), reuse=reuse,
                   prompt_cache=prompt_cache) as q:
        futs = [q.submit(p, max_new_tokens=NEW, seed=i, **kw) for i, p in enumerate(PROMPTS)]
        return [f.result(timeout=60) for f in futs], dict(q.stats), q


def test_offset_prefill_matches_a_plain_prefill(lm, eng, one_thread):
    seqs = [lm.encode(p) for p in PROMPTS[:4]]
    ref = eng.logits(seqs)
    P = len(prefix_ids(lm))
    keep = [P, 3, P, len(seqs[3]) - 1]  # per-row offsets: the shared head, a short head, all but the last token
    cache = eng.new_cache(len(seqs), 200)
    for s, (ids, n) in enumerate(zip(seqs, keep)):
        scratch = eng.new_cache(1, n)
        eng.prefill(scratch, [ids[:n]], [0])
        eng.copy_kv(cache, s, scratch.k[:, 0], scratch.v[:, 0])
    got = eng.prefill(cache, [ids[n:] for ids, n in zip(seqs, keep)], list(range(len(seqs))), offsets=keep)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert cache.lens.tolist() == [len(s) for s in seqs]
    # decoding on from there gives what a plain prefill's cache gives
    plain = eng.new_cache(len(seqs), 200)
    eng.prefill(plain, seqs, range(len(seqs)))
    nxt = ref.argmax(-1)
    torch.testing.assert_close(eng.decode(cache, nxt), eng.decode(plain, nxt), rtol=1e-4, atol=1e-5)


def test_greedy_texts_equal_with_reuse_on_and_off(lm, eng, one_thread):
    off, s_off, _ = run_queue(eng, lm, reuse=False)
    on, s_on, q = run_queue(eng, lm, reuse=True)
    assert on == off
    assert s_off["prefill_tokens_reused"] == 0
    P = len(prefix_ids(lm))
    assert P >= 32
    # the head is computed once; every row that starts with it reuses it; repeats reuse their whole prompt
    assert s_on["prefix_hits"] >= 3 and s_on["prompt_hits"] >= 3
    assert s_on["prefill_tokens"] + s_on["prefill_tokens_reused"] == s_off["prefill_tokens"] + P
    assert s_on["prefill_tokens"] < s_off["prefill_tokens"] / 2
    assert len(q._prompts) <= 4


def test_sampled_texts_equal_for_each_rows_seed(lm, eng, one_thread):
    off, _, _ = run_queue(eng, lm, reuse=False, temperature=0.9, top_p=0.95)
    on, s_on, _ = run_queue(eng, lm, reuse=True, temperature=0.9, top_p=0.95)
    assert on == off
    assert s_on["prefill_tokens_reused"] > 0
    # repeats of one prompt draw with their own seeds: copied logits do not make them copies of each other
    assert len({on[0], on[2], on[4]}) > 1


def test_prompt_cache_is_bounded_and_one_slot_still_reuses(lm, eng, one_thread):
    # one slot: repeats are never admitted together, so they come from the prompt cache
    ref, _, _ = run_queue(eng, lm, reuse=False, max_batch=1)
    got, stats, q = run_queue(eng, lm, reuse=True, max_batch=1, prompt_cache=1)
    assert got == ref and len(q._prompts) == 1
    assert stats["prompt_hits"] == 0  # each repeat was pushed out by a different prompt in between
    got, stats, q = run_queue(eng, lm, reuse=True, max_batch=1, prompt_cache=3)
    assert got == ref and stats["prompt_hits"] >= 2 and len(q._prompts) == 3


def test_kept_prompts_are_forgotten_when_weights_change(lm, eng, one_thread):
    w = lm.model.lm_head.weight
    with eng.queue(max_batch=1, max_len=256, shared_prefix=prefix_ids(lm)) as q:
        a = q.submit(PROMPTS[0], max_new_tokens=NEW).result(timeout=60)
        with torch.no_grad():
            w.mul_(-1.0)  # an optimizer step between two requests of one long-lived queue
        try:
            b = q.submit(PROMPTS[0], max_new_tokens=NEW).result(timeout=60)
            fresh = eng.generate([PROMPTS[0]], max_new_tokens=NEW)[0]
        finally:
            with torch.no_grad():
                w.mul_(-1.0)
    assert b == fresh and q.stats["prompt_hits"] == 0
    assert isinstance(a, str)


def test_generate_rows_reuses_the_rows_common_prefix(lm, one_thread):
    rows = [p for p in PROMPTS[:len(TAILS)] for _ in range(2)]
    off_stats, on_stats = {}, {}
    off = generate_rows(lm, rows, NEW, temperature=0.8, seed=5, kv_reuse=False, stats=off_stats)
    on = generate_rows(lm, rows, NEW, temperature=0.8, seed=5, stats=on_stats)
    assert on == off
    assert off_stats["prefill_tokens_reused"] == 0
    assert on_stats["prefill_tokens_reused"] > on_stats["prefill_tokens"]


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_offset_prefill_in_low_precision(lm, one_thread, precision):
    # the kept prefix's keys are stored in the cache's dtype and read back as they are in decoding
    eng = DecodeEngine(lm.model, lm.tokenizer, precision, encode=lm.encode)
    seqs = [lm.encode(p) for p in PROMPTS[:3]]
    P = len(prefix_ids(lm))
    ref = eng.logits(seqs)
    scratch = eng.new_cache(1, P)
    eng.prefill(scratch, [seqs[0][:P]], [0])
    cache = eng.new_cache(3, 200)
    for s in range(3):
        eng.copy_kv(cache, s, scratch.k[:, 0], scratch.v[:, 0])
    got = eng.prefill(cache, [s[P:] for s in seqs], [0, 1, 2], offsets=[P] * 3)
    assert (got.argmax(-1) == ref.argmax(-1)).all()
    assert (got - ref).abs().max() < 0.05 * ref.abs().max()
