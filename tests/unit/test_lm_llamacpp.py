"""The optional llama.cpp backend. `make test` needs no compiler: without llama-cpp-python (the `fast` extra,
built from source) the backend tests skip with that reason, and the fallback test checks that
``load_lm(..., generation_only=True)`` then gives the usual backend. With it installed (and the model wheel,
`make test-model`), the embedded GGUF generates through llama.cpp and agrees with lmlab's float32 path."""

import pytest

from lmlab.lm import load_lm
from lmlab.lm.llamacpp import available, load_llamacpp

needs_llamacpp = pytest.mark.skipif(not available(), reason="llama-cpp-python is not installed (optional: "
                                    "CMAKE_ARGS='-DLLAVA_BUILD=OFF' pip install -e '.[fast]'; needs cmake and g++)")


def test_generation_only_falls_back_without_llamacpp(monkeypatch):
    import lmlab.lm.llamacpp as mod

    monkeypatch.setattr(mod, "available", lambda: False)
    assert load_llamacpp("whatever.gguf") is None
    # a non-GGUF spec never goes to llama.cpp, installed or not
    assert type(load_lm("dummy", generation_only=True)).__name__ == "DummyLM"


@needs_llamacpp
@pytest.mark.model
@pytest.mark.slow
def test_llamacpp_generates_from_the_embedded_gguf():
    lm = load_lm("default", generation_only=True, n_threads=1)
    assert type(lm).__name__ == "LlamaCppLM" and lm.capabilities == {"text"}
    prompt = lm.chat_prompt("What is the capital of France?")
    a = lm.generate([prompt], max_new_tokens=12)
    assert a == lm.generate([prompt], max_new_tokens=12)        # greedy: deterministic
    assert a[0].strip()
    s1 = lm.generate([prompt], max_new_tokens=12, temperature=0.8, seed=1)
    assert s1 == lm.generate([prompt], max_new_tokens=12, temperature=0.8, seed=1)
    word = a[0].split()[1]
    cut = lm.generate([prompt], max_new_tokens=12, stop=[word])
    assert word not in cut[0] and a[0].startswith(cut[0])
    # llama.cpp's next-token logits for a plain prompt rank the same first token as lmlab's float32 path
    hf = load_lm("default")
    ids = hf.encode("The capital of France is")
    assert int(lm.last_logits(ids).argmax()) == int(hf.next_token_logits(["The capital of France is"])[0].argmax())
    # same tokens as lmlab's tokenizer for a chat prompt (special tokens parsed)
    hf_ids = list(lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert lm.encode(prompt)[-len(hf_ids):] == hf_ids
