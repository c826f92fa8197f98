"""Tokenizers: exact round trips (property tests), dictionary invariants, the interface."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.tasks.markov import MarkovConfig, MarkovSource
from lmlab.tokenizers import TOKENIZERS
from lmlab.tokenizers.bpe import BPETokenizer
from lmlab.tokenizers.char import CharTokenizer
from lmlab.tokenizers.lz78 import LZ78Tokenizer

ALPHA = "01"
TRAIN = MarkovSource(MarkovConfig(kind="switching", order=2, delta=0.2)).text(4000, 0)
binary = st.text(alphabet=ALPHA, max_size=300)
ternary = st.text(alphabet="abc", max_size=200)


@pytest.fixture(scope="module")
def trained():
    return {
        "char": CharTokenizer.train(TRAIN, 2, ALPHA),
        "bpe": BPETokenizer.train(TRAIN, 64, ALPHA),
        "lz78": LZ78Tokenizer.train(TRAIN, 64, ALPHA),
        "lzw": LZ78Tokenizer.train(TRAIN, 64, ALPHA, advance="lzw"),
    }


@settings(max_examples=60, deadline=None)
@given(text=binary)
def test_round_trip_on_random_binary_strings(trained, text):
    for name, tok in trained.items():
        ids = tok.encode(text)
        assert tok.decode(ids) == text, name
        assert tok.n_chars(ids) == len(text)
        assert all(0 <= i < tok.vocab_size for i in ids)


@settings(max_examples=25, deadline=None)
@given(train=ternary, text=ternary, d=st.integers(3, 40))
def test_round_trip_with_dictionaries_learned_from_random_text(train, text, d):
    for cls in (BPETokenizer, LZ78Tokenizer):
        tok = cls.train(train, d, "abc")
        assert tok.vocab_size <= d
        assert set("abc") <= set(tok.tokens)
        assert tok.decode(tok.encode(text)) == text


def test_encode_batch_equals_encode(trained):
    texts = ["", "0", "0110", TRAIN[:77]]
    for tok in trained.values():
        assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]


def test_dictionary_sizes_and_compression(trained):
    assert trained["char"].vocab_size == 2
    assert trained["bpe"].vocab_size == 64 and trained["lz78"].vocab_size == 64
    for name in ("bpe", "lz78"):
        tok = trained[name]
        assert tok.tokens[:2] == ["0", "1"]
        assert len(tok.encode(TRAIN)) < len(TRAIN) / 2, name  # merges compress the text they were learned on


def test_lz78_dictionary_is_prefix_closed_and_in_parse_order():
    tok = LZ78Tokenizer.train("0110101101", 16, "01")
    assert tok.tokens == ["0", "1", "01", "10", "101"]
    assert all(t[:-1] in tok.tokens for t in tok.tokens if len(t) > 1)
    assert LZ78Tokenizer.train("0110101101", 3, "01").tokens == ["0", "1", "01"]  # stops when full
    with pytest.raises(ValueError, match="prefix-closed"):
        LZ78Tokenizer(["0", "1", "011"], "01")


def test_lz78_encoding_is_greedy_longest_match():
    tok = LZ78Tokenizer(["0", "1", "01", "011", "0110"], "01")
    assert [tok.tokens[i] for i in tok.encode("01101011")] == ["0110", "1", "011"]


def test_bpe_has_no_normalizer_or_pre_tokenizer(trained):
    hf = trained["bpe"].hf
    assert hf.normalizer is None and hf.pre_tokenizer is None


def test_characters_outside_the_alphabet_are_refused(trained):
    for tok in trained.values():
        with pytest.raises(ValueError, match="not in the alphabet"):
            tok.encode("0120")


def test_registry_and_fingerprint(trained):
    assert TOKENIZERS.get("lz78") is LZ78Tokenizer and TOKENIZERS.get("bpe") is BPETokenizer
    assert trained["bpe"].fingerprint() == BPETokenizer.train(TRAIN, 64, ALPHA).fingerprint()  # training is deterministic
    assert trained["bpe"].fingerprint() != trained["lz78"].fingerprint()
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train(TRAIN, 1, ALPHA)
