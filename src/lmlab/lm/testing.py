"""A tiny random Llama and a character tokenizer, built offline from configs (for tests and examples).

>>> lm = tiny_hf_lm()                                        # doctest: +SKIP
>>> lm.next_token_logits(["hello"]).shape                    # doctest: +SKIP
torch.Size([1, 48])
"""

from __future__ import annotations

import string
from typing import Any

CHARS = string.ascii_lowercase + string.digits + " .,:;!?\n"
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def char_tokenizer(bos: bool = True) -> Any:
    """A ``PreTrainedTokenizerFast`` with one token per character (a-z, 0-9, punctuation); BOS added on encode."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + list(CHARS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def tiny_llama(vocab_size: int = len(SPECIALS) + len(CHARS), seed: int = 0, n_layers: int = 2,
               attn_implementation: str = "sdpa") -> Any:
    """A randomly initialised ``LlamaForCausalLM``: 2 layers, d_model 32, 4 query heads, 2 KV heads."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
                      attn_implementation=attn_implementation)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


def tiny_hf_lm(seed: int = 0, batch_size: int = 8, attn_implementation: str = "sdpa") -> Any:
    from lmlab.lm.hf import HFLM

    return HFLM(tiny_llama(seed=seed, attn_implementation=attn_implementation), char_tokenizer(),
                batch_size=batch_size, name="tiny-llama")


def word_tokenizer(words: list[str]) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` (whitespace and punctuation split); unknown words -> <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + sorted(set(words) - set(SPECIALS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def tiny_model_dir(path: Any, words: list[str] | None = None, seed: int = 0, n_layers: int = 2) -> Any:
    """Write a tiny random Llama and its tokenizer (word-level over ``words``, else characters) to ``path``."""
    from pathlib import Path

    tok = word_tokenizer(words) if words is not None else char_tokenizer()
    model = tiny_llama(vocab_size=len(tok), seed=seed, n_layers=n_layers)
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
