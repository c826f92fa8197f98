"""The fast decoding engine (lmlab.lm.engine) on a tiny random Llama built from a config: greedy outputs
identical to transformers' generate, sampling identical for the same seed, per-row stop, continuous
batching from several threads, a bounded queue. No hub, no model wheel."""

import threading

import pytest
import torch

pytest.importorskip("transformers")

from lmlab.lm import LMError  # noqa: E402
from lmlab.lm.engine import DecodeEngine, GenerationQueue, QueueFull, engine_for, supports  # noqa: E402
from lmlab.lm.testing import tiny_hf_lm  # noqa: E402

# the fixed prompt set the float32 path must reproduce token for token
PROMPTS = ["hello world", "the cat sat on the mat.", "a", "1, 2, 3, 4,", "what is up?", "zzz top", "q",
           "lorem ipsum dolor sit amet", "x y z", "good morning, how are you today?"]
NEW = 16


@pytest.fixture(scope="module")
def lm():
    return tiny_hf_lm(batch_size=4)


def hf_reference(lm, prompts, batch=4, **kw):
    """What HFLM.generate returned before the engine: transformers' generate on left-padded batches."""
    seqs = [lm.encode(p) for p in prompts]
    out = []
    for i in range(0, len(seqs), batch):
        ids, mask, _ = lm.pad_left(seqs[i:i + batch])
        if kw.get("do_sample"):
            gen_kw = dict(kw)
        else:
            gen_kw = dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.no_grad():
            o = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=NEW, pad_token_id=lm.pad_id,
                                  **gen_kw)
        out += lm.tokenizer.batch_decode(o[:, ids.shape[1]:], skip_special_tokens=True)
    return out


@pytest.mark.slow
def test_greedy_identical_to_transformers(lm, one_thread):
    ref = hf_reference(lm, PROMPTS)
    assert lm.engine() is not None
    assert lm.generate(PROMPTS, max_new_tokens=NEW) == ref        # HFLM.generate goes through the engine
    eng = DecodeEngine(lm.model, lm.tokenizer, "float32", encode=lm.encode)
    assert eng.generate(PROMPTS, max_new_tokens=NEW, batch_size=3) == ref   # other batch splits too
    assert eng.generate(PROMPTS, max_new_tokens=NEW, batch_size=1) == ref
    lm.generate_with = "hf"
    try:
        assert lm.generate(PROMPTS, max_new_tokens=NEW) == ref
    finally:
        lm.generate_with = "engine"


@pytest.mark.slow
def test_engine_logits_match_forward(lm, one_thread):
    eng = lm.engine()
    seqs = [lm.encode(p) for p in PROMPTS[:4]]
    torch.testing.assert_close(eng.logits(seqs), lm.next_token_logits(PROMPTS[:4]), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_sampling_identical_to_transformers_for_a_seed(lm, one_thread):
    torch.manual_seed(7)
    ref = hf_reference(lm, PROMPTS[:4], do_sample=True, temperature=0.9, top_p=0.9)
    assert lm.generate(PROMPTS[:4], max_new_tokens=NEW, temperature=0.9, top_p=0.9, seed=7) == ref


@pytest.mark.slow
def test_low_precision_paths_mostly_agree(lm, one_thread):
    ref = lm.engine().logits([lm.encode(p) for p in PROMPTS])
    for precision in ("bfloat16", "int8", "int8-dynamic"):
        got = lm.engine(precision).logits([lm.encode(p) for p in PROMPTS])
        agree = (got.argmax(-1) == ref.argmax(-1)).float().mean()
        assert agree >= 0.7, precision
        assert lm.engine(precision).generate(PROMPTS[:2], max_new_tokens=4)  # it decodes


def test_per_row_stop(lm, one_thread):
    eng = lm.engine()
    full = eng.generate(PROMPTS[:4], max_new_tokens=NEW)
    # a stop string cut from one row's output ends that row only; the others run to max_new_tokens
    stop = full[1][3:5]
    cut = eng.generate(PROMPTS[:4], max_new_tokens=NEW, stop=[stop])
    assert cut[1] == full[1][:full[1].find(stop)]
    ids = eng.generate_ids([lm.encode(p) for p in PROMPTS[:4]], max_new_tokens=NEW, stop=[stop])
    assert len(ids[1]) < NEW
    assert any(len(r) == NEW for r in ids)


def test_eos_ends_a_row(lm, one_thread):
    eng = DecodeEngine(lm.model, lm.tokenizer, "float32", encode=lm.encode)
    first = eng.generate_ids([lm.encode("hello world")], max_new_tokens=3)[0]
    eng.eos_ids = [first[1]]  # pretend the second generated token is EOS
    assert eng.generate_ids([lm.encode("hello world")], max_new_tokens=3)[0] == first[:1]


@pytest.mark.slow
def test_queue_from_threads_gives_the_same_text(lm, one_thread):
    eng = lm.engine()
    ref = eng.generate(PROMPTS, max_new_tokens=NEW)
    results: dict[int, str] = {}
    with eng.queue(max_batch=3, max_pending=len(PROMPTS)) as q:
        def client(i):
            results[i] = q.submit(PROMPTS[i], max_new_tokens=NEW).result(timeout=60)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [results[i] for i in range(len(PROMPTS))] == ref
    assert q.stats["completed"] == len(PROMPTS) and q.stats["max_active"] <= 3
    # requests with different lengths shared decode steps: fewer steps than one-by-one decoding
    assert q.stats["steps"] < len(PROMPTS) * NEW


def test_queue_is_bounded(lm):
    q = GenerationQueue(lm.engine(), max_batch=1, max_pending=2)  # not started: nothing is taken off
    q._thread = object()  # keep submit from starting the worker
    q.submit("a", max_new_tokens=2)
    q.submit("b", max_new_tokens=2)
    with pytest.raises(QueueFull, match="full"):
        q.submit("c", max_new_tokens=2)
    assert q.stats["rejected"] == 1
    with pytest.raises(LMError, match="max_len"):
        q.submit("a" * 50, max_new_tokens=2000)


def test_queue_stops_and_sheds(lm, one_thread):
    with lm.engine().queue(max_batch=2, max_pending=8) as q:
        f = q.submit("hello", max_new_tokens=4, stop=[])
        assert isinstance(f.result(timeout=60), str)
    with pytest.raises(LMError, match="closed"):
        q.submit("hello")


def test_sampled_queue_requests_are_reproducible(lm, one_thread):
    with lm.engine().queue(max_batch=2) as q:
        a = q.submit("hello", max_new_tokens=8, temperature=1.0, seed=3).result(timeout=60)
        b = q.submit("hello", max_new_tokens=8, temperature=1.0, seed=3).result(timeout=60)
    assert a == b


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_engine_sees_weight_updates(lm, one_thread, precision):
    eng = DecodeEngine(lm.model, lm.tokenizer, precision, encode=lm.encode)
    before = eng.logits([lm.encode("hello")])
    w = lm.model.lm_head.weight
    with torch.no_grad():
        w.mul_(2.0)  # an optimizer step changes weights in place
    try:
        after = eng.logits([lm.encode("hello")])
        torch.testing.assert_close(after, 2 * before, rtol=2e-2, atol=1e-3)
    finally:
        with torch.no_grad():
            w.div_(2.0)
    old = lm.model.lm_head.weight
    lm.model.lm_head.weight = torch.nn.Parameter(old.detach() * 3)  # a replaced tensor
    try:
        torch.testing.assert_close(eng.logits([lm.encode("hello")]), 3 * before, rtol=2e-2, atol=1e-3)
    finally:
        lm.model.lm_head.weight = old


def test_hooks_or_other_models_fall_back(lm):
    handle = lm.model.model.layers[0].register_forward_hook(lambda *a: None)
    try:
        assert lm.engine() is None   # a hook must see generation: transformers' generate runs
    finally:
        handle.remove()
    assert lm.engine() is not None

    class NotLlama:
        config = type("C", (), {"model_type": "gpt2"})()
    assert "Llama-family" in supports(NotLlama())
    with pytest.raises(LMError, match="precision"):
        DecodeEngine(lm.model, lm.tokenizer, "fp4")
    assert engine_for(lm, "int8") is not None


def test_idle_slots_do_not_fill_the_cache(lm, one_thread):
    # slot 0 ends early and stays idle while slot 1 decodes for a long time: the idle row must not grow
    eng = DecodeEngine(lm.model, lm.tokenizer, "float32", encode=lm.encode)
    eng.eos_ids = []  # every request runs to max_new_tokens
    with eng.queue(max_batch=2, max_pending=4, max_len=40) as q:
        a = q.submit("abcdefghijklmn", max_new_tokens=2)
        b = q.submit("abcd", max_new_tokens=30)
        assert isinstance(a.result(timeout=60), str)
        assert b.result(timeout=60) == eng.generate(["abcd"], max_new_tokens=30)[0]
