"""First-token features: batched == one by one on the tiny random Llama; the on-disk cache; log-odds."""

import numpy as np
import pytest
import torch

from lmlab.moderation.features import FirstTokenFeatures, PromptTemplate, log_odds, model_fingerprint

PROMPTS = ["hello there", "a much longer prompt, with commas, that needs padding in a batch", "x",
           "what is the capital of france?", "tell me a joke about cats and dogs"]


@pytest.fixture(scope="module")
def lm():
    from lmlab.lm.testing import tiny_hf_lm

    return tiny_hf_lm(seed=0, batch_size=4)


@pytest.mark.slow
def test_batched_equals_one_by_one(lm):
    tmpl = PromptTemplate(max_tokens=None)
    batched = FirstTokenFeatures(lm, tmpl, cache_dir=None, batch_size=3).logits(PROMPTS)
    single = np.concatenate([FirstTokenFeatures(lm, tmpl, cache_dir=None, batch_size=1).logits([p]) for p in PROMPTS])
    assert batched.shape == (len(PROMPTS), len(lm.tokenizer))
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)
    # and equal to the plain transformers forward pass of each formatted prompt at its last position
    for i, p in enumerate(PROMPTS):
        ids = torch.tensor([lm.encode(tmpl.format(lm, p))])
        with torch.no_grad():
            ref = lm.model(input_ids=ids).logits[0, -1].numpy()
        np.testing.assert_allclose(batched[i], ref, rtol=1e-5, atol=1e-5)


def test_cache_is_used_and_keyed_by_model_and_template(lm, tmp_path):
    import sqlite3

    from lmlab.lm.testing import tiny_hf_lm

    f = FirstTokenFeatures(lm, PromptTemplate(), cache_dir=tmp_path)
    a = f.logits(PROMPTS[:3])
    assert f.stats == {"computed": 3, "cached": 0}
    b = f.logits(PROMPTS[:3] + PROMPTS[3:])  # three from the cache, two new
    assert f.stats == {"computed": 5, "cached": 3}
    np.testing.assert_array_equal(a, b[:3])
    cache = f.cached_lm._logits
    assert len(cache) == 5 and cache.path == tmp_path / "first-token.sqlite"
    other_model = FirstTokenFeatures(tiny_hf_lm(seed=1), PromptTemplate(), cache_dir=tmp_path)
    other_tmpl = FirstTokenFeatures(lm, PromptTemplate(suffix=" "), cache_dir=tmp_path)
    assert other_model.cached_lm._logits.digest != cache.digest != other_tmpl.cached_lm._logits.digest
    assert other_model.model_key != f.model_key and model_fingerprint(lm) == f.model_key == lm.fingerprint
    assert other_tmpl.logits(PROMPTS[:1]) is not None and other_tmpl.stats["computed"] == 1
    # a damaged entry is recomputed, not trusted
    with sqlite3.connect(cache.path) as con:
        con.execute("UPDATE entries SET value = ? WHERE rowid = (SELECT MIN(rowid) FROM entries WHERE key = ?)",
                    (b"junk", cache.digest))
    f2 = FirstTokenFeatures(lm, PromptTemplate(), cache_dir=tmp_path)
    np.testing.assert_allclose(f2.logits(PROMPTS), b, rtol=1e-5, atol=1e-5)
    assert f2.stats == {"computed": 1, "cached": 4}


def test_truncation_keeps_template_end(lm):
    t = PromptTemplate(max_tokens=5)
    s = t.format(lm, "abcdefghijklmnop")
    assert "abcde" in s and "abcdef" not in s and s.endswith(lm.chat_prompt("abcde")[-10:])


def test_dummy_lm_without_forward_ids():
    from lmlab.lm.dummy import DummyLM

    lm = DummyLM()
    x = FirstTokenFeatures(lm, PromptTemplate(kind="raw", max_tokens=None), cache_dir=None).logits(["ab", "cd"])
    np.testing.assert_allclose(x, lm.next_token_logits(["ab", "cd"]).numpy())


def test_log_odds_matches_the_formula_and_is_bounded():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 50))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(log_odds(logits), np.log(p) - np.log(1 - p), rtol=1e-5, atol=1e-5)
    extreme = np.array([[1000.0, 0.0, -1000.0]])
    f = log_odds(extreme)
    assert np.isfinite(f).all() and f[0, 0] == pytest.approx(np.log(1 / 1e-16), rel=1e-4)
    assert f[0, 2] == pytest.approx(np.log(1e-16), rel=1e-4)


def test_template_validation():
    from lmlab.config import ConfigError

    with pytest.raises(ConfigError, match="kind"):
        PromptTemplate(kind="llama")
    with pytest.raises(ConfigError, match="max_tokens"):
        PromptTemplate(max_tokens=0)


@pytest.mark.slow
def test_shared_prefix_cache_equals_plain_forward(lm):
    tmpl = PromptTemplate(max_tokens=None)
    fast = FirstTokenFeatures(lm, tmpl, cache_dir=None, batch_size=3, share_prefix=True)
    plain = FirstTokenFeatures(lm, tmpl, cache_dir=None, batch_size=3, share_prefix=False)
    np.testing.assert_allclose(fast.logits(PROMPTS), plain.logits(PROMPTS), rtol=1e-5, atol=1e-5)
    from lmlab.moderation.features import common_prefix

    assert len(common_prefix([lm.encode(tmpl.format(lm, p)) for p in PROMPTS])) >= 4  # the path was exercised
    assert common_prefix([[1, 2, 3], [1, 2]]) == [1]
