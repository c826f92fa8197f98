"""The real default models from the wheels (`make test-model`; skipped in `make test`)."""

import pytest
import torch

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_smollm2_loads_from_gguf_then_cache_with_equal_logits(tmp_path, monkeypatch):
    from lmlab.lm import load_lm

    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path))
    cold = load_lm("default")
    warm = load_lm("default")
    assert cold.load_info["source"] == "gguf" and warm.load_info["source"] == "cache"
    prompts = ["The capital of France is", "def add(a, b):\n    return", "1, 2, 3,"]
    a, b = cold.next_token_logits(prompts), warm.next_token_logits(prompts)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, torch.cat([warm.next_token_logits([p]) for p in prompts]), rtol=1e-4, atol=1e-4)
    assert "Paris" in warm.generate(prompts[:1], max_new_tokens=4)[0]
    assert "<|im_start|>assistant" in warm.chat_prompt("hi")


def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch):
    from lmlab.lm import load_lm
    from lmlab.lm.gguf import cache_dir_for, default_gguf_path

    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path))
    load_lm("default")
    weights = cache_dir_for(default_gguf_path()) / "model.safetensors"
    weights.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        lm = load_lm("default")
    assert lm.load_info["source"] == "gguf" and weights.stat().st_size > 1e8


def test_minilm_embeddings():
    from lmlab.lm.embed import load_embedder

    emb = load_embedder()
    sim = emb.similarity(["a cat sits on the mat"], ["a kitten rests on a rug", "tax law changes in 2024"])
    assert emb.dim == 384 and sim[0, 0] > sim[0, 1] + 0.3
