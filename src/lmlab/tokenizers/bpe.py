"""Byte-pair encoding, trained with the Hugging Face ``tokenizers`` library.

The HF tokenizer is built with no normalizer, no pre-tokenizer and no decoder: the text is one
"word", so merges may span any characters and ``decode`` (a join of the token strings) inverts
``encode`` exactly. Training text is fed in chunks of ``chunk_chars`` characters (merges do not
cross a chunk boundary while learning; encoding is unaffected): HF's trainer is quadratic-ish in
the length of one word, and 1,024-character chunks make training 20x faster at no visible cost.

``vocab_size`` counts every token, single characters included: on a binary alphabet,
``vocab_size=8`` means 6 merges.
"""

from __future__ import annotations

from collections.abc import Sequence

from lmlab.tokenizers.base import Tokenizer


class BPETokenizer(Tokenizer):
    name = "bpe"
    chunk_chars = 1024

    def __init__(self, hf_tokenizer: object, alphabet: str):
        vocab = hf_tokenizer.get_vocab()  # type: ignore[attr-defined]
        tokens = [s for s, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
        if [vocab[s] for s in tokens] != list(range(len(tokens))):
            raise ValueError("BPETokenizer: the HF vocabulary ids are not 0..n-1")
        super().__init__(tokens, alphabet)
        self.hf = hf_tokenizer

    @classmethod
    def train(cls, text: str, vocab_size: int, alphabet: str) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import models, trainers

        if vocab_size < len(alphabet):
            raise ValueError(f"BPETokenizer: vocab_size ({vocab_size}) must be >= the alphabet size ({len(alphabet)})")
        hf = HFTokenizer(models.BPE())  # no normalizer, no pre-tokenizer: exact round trip
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=list(alphabet), special_tokens=[],
                                      min_frequency=0, show_progress=False)
        n = cls.chunk_chars
        hf.train_from_iterator([text[i: i + n] for i in range(0, len(text), n)], trainer=trainer)
        return cls(hf, alphabet)

    def encode(self, text: str) -> list[int]:
        self._check_alphabet(text)  # HF silently drops characters it does not know
        return list(self.hf.encode(text).ids) if text else []  # type: ignore[attr-defined]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        for t in texts:
            self._check_alphabet(t)
        return [list(e.ids) for e in self.hf.encode_batch(list(texts))]  # type: ignore[attr-defined]
