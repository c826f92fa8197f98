"""Optional llama.cpp backend (``llama-cpp-python``) for the generation-only role.

llama.cpp runs the GGUF file as stored (4-bit blocks, its own CPU kernels), so it decodes several
times faster than PyTorch on a small CPU; it has no hooks, no gradients and no full-vocabulary
logits through this wrapper, so it only serves callers that need text out (``generate``,
``chat_prompt``). ``load_lm(spec, generation_only=True)`` picks it for a GGUF spec when the package
is installed, and the Hugging Face backend otherwise.

There is no binary wheel for this machine; the ``fast`` extra builds it from its source
distribution (needs cmake and a C++ compiler, several minutes on 2 cores)::

    CMAKE_ARGS="-DLLAVA_BUILD=OFF" pip install -e '.[fast]'
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmlab.lm.base import LM, LMError

FAST_EXTRA = "CMAKE_ARGS='-DLLAVA_BUILD=OFF' pip install -e '.[fast]'  (builds llama-cpp-python; needs cmake and g++)"


def available() -> bool:
    """True when ``llama_cpp`` imports (the ``fast`` extra is installed and its library loads)."""
    try:
        import llama_cpp  # noqa: F401
    except Exception:  # noqa: BLE001 - a missing package and a broken shared library both mean: not available
        return False
    return True


class LlamaCppLM(LM):
    """A GGUF file run by llama.cpp; text in, text out."""

    capabilities = frozenset({"text"})
    backend = "the llama.cpp backend"

    def __init__(self, gguf: str | Path, n_threads: int | None = None, n_ctx: int = 2048, n_batch: int = 512,
                 seed: int = 0):
        try:
            import llama_cpp
        except ImportError:
            raise LMError(f"the llama.cpp backend needs llama-cpp-python: {FAST_EXTRA}") from None
        self.path = Path(gguf)
        if not self.path.exists():
            raise LMError(f"GGUF file {self.path} does not exist")
        import torch

        self.n_threads = n_threads or torch.get_num_threads()
        self.llama = llama_cpp.Llama(model_path=str(self.path), n_ctx=n_ctx, n_batch=n_batch, n_threads=self.n_threads,
                                     n_threads_batch=self.n_threads, seed=seed, verbose=False, logits_all=False)
        self.name = f"llama.cpp:{self.path.name}"
        self._tok: Any = None
        self._lock = threading.Lock()  # one llama context: one sequence at a time

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer of the same GGUF (for chat templates); read from lmlab's cache if there."""
        if self._tok is None:
            from transformers import AutoTokenizer

            from lmlab.lm.gguf import cache_dir_for

            cache = cache_dir_for(self.path)
            if (cache / "tokenizer_config.json").exists():
                self._tok = AutoTokenizer.from_pretrained(str(cache))
            else:
                self._tok = AutoTokenizer.from_pretrained(str(self.path.parent), gguf_file=self.path.name)
        return self._tok

    def encode(self, text: str) -> list[int]:
        """llama.cpp's tokens of ``text`` (special tokens such as ``<|im_start|>`` parsed; BOS as the GGUF says)."""
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def last_logits(self, ids: Sequence[int]) -> Any:
        """Next-token logits (numpy float32, vocab) after ``ids``, from a fresh context state."""
        import numpy as np

        ll = self.llama
        with self._lock:
            ll.reset()
            ll.eval(list(ids))
            # with logits_all=False llama-cpp-python keeps no scores: read the context's last row
            return np.ctypeslib.as_array(ll._ctx.get_logits_ith(-1), shape=(ll.n_vocab(),)).copy()

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = ()) -> list[str]:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings; wrap a single prompt in a list")
        out = []
        with self._lock:
            for i, p in enumerate(prompts):
                # sampling knobs set explicitly: llama-cpp-python's defaults (top_k 40, min_p 0.05, a
                # repeat penalty in older versions) differ from lmlab's HF path
                r = self.llama.create_completion(
                    p, max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=0 if temperature > 0 else 1,
                    min_p=0.0, repeat_penalty=1.0, stop=list(stop) or None,
                    seed=(seed + i) if seed is not None else None)
                out.append(r["choices"][0]["text"])
        return out


def load_llamacpp(path: str | Path | None = None, **kwargs: Any) -> LlamaCppLM | None:
    """A :class:`LlamaCppLM` for ``path`` (default: the embedded SmolLM2 GGUF), or None when llama-cpp-python
    is not installed."""
    if not available():
        return None
    from lmlab.lm.gguf import check_gguf, default_gguf_path

    gguf = Path(path).expanduser() if path is not None else default_gguf_path()
    check_gguf(gguf)
    return LlamaCppLM(gguf, **{k: v for k, v in kwargs.items() if k in ("n_threads", "n_ctx", "n_batch", "seed")})
