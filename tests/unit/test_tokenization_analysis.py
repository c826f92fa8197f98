"""Per-character conversion of token losses, the count-based token unigram, tokenized batches."""

import math

import numpy as np
import pytest
import torch

from lmlab.analysis.tokenization import fit_token_unigram, per_char_loss, token_unigram_eval, unigram_nats_per_char
from lmlab.studies.tokenization import token_batch
from lmlab.tasks.markov import MarkovConfig, MarkovSource
from lmlab.tokenizers.char import CharTokenizer
from lmlab.tokenizers.lz78 import LZ78Tokenizer


def test_per_char_loss_divides_total_nll_by_characters_not_tokens():
    nll = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    # 4 tokens covering 10 characters: total 10 nats -> 1 nat per character (2.5 per token)
    assert per_char_loss(nll, mask, torch.tensor([6, 4])) == pytest.approx(1.0)
    assert per_char_loss(nll, mask, 10) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        per_char_loss(nll, mask, 0)


def test_uniform_model_per_char_loss_is_log_v_times_tokens_per_char():
    tok = LZ78Tokenizer(["0", "1", "00", "01", "000"], "01")
    texts = ["000000", "010101", "011000"]
    batch, n_chars = token_batch(tok, texts)
    v = tok.vocab_size + 1  # + BOS
    nll = torch.full(batch.targets.shape, math.log(v))
    n_tokens = sum(len(tok.encode(t)) for t in texts)
    assert int(batch.mask.sum()) == n_tokens and int(n_chars.sum()) == 18
    assert per_char_loss(nll, batch.mask, n_chars) == pytest.approx(math.log(v) * n_tokens / 18)


def test_token_batch_targets_decode_to_each_row():
    tok = LZ78Tokenizer.train("0110100110010110" * 20, 16, "01")
    texts = ["0110100110", "1111111111", "0000011111"]
    batch, n_chars = token_batch(tok, texts)
    bos = tok.vocab_size
    assert (batch.tokens[:, 0] == bos).all()  # every token, the first included, is predicted
    for i, t in enumerate(texts):
        ids = batch.targets[i][batch.mask[i]].tolist()
        assert tok.decode(ids) == t and n_chars[i] == len(t)
        assert batch.tokens[i, 1: len(ids)].tolist() == ids[:-1]  # inputs are the targets shifted right


def test_char_tokens_give_per_char_equal_per_token():
    tok = CharTokenizer("01")
    batch, n_chars = token_batch(tok, ["0110", "1001"])
    nll = torch.rand(batch.targets.shape)
    assert per_char_loss(nll, batch.mask, n_chars) == pytest.approx(float(nll[batch.mask].mean()))


def test_char_unigram_on_switching_source_is_ln2_and_counts_are_smoothed():
    src = MarkovSource(MarkovConfig(kind="switching", order=2, delta=0.2))
    train, test = src.text(20_000, 0), src.text(10_000, 1)
    res = token_unigram_eval(CharTokenizer("01"), train, test)
    assert res["nats_per_char"] == pytest.approx(math.log(2), abs=0.01) and res["chars_per_token"] == 1
    tok = LZ78Tokenizer(["0", "1", "00"], "01")
    probs = fit_token_unigram(tok, "0000", smoothing=0.5)  # counts 00: 2 -> (0.5, 0.5, 2.5) / 3.5
    assert probs == pytest.approx(np.array([0.5, 0.5, 2.5]) / 3.5)
    assert unigram_nats_per_char(tok, probs, "001") == pytest.approx(-(math.log(2.5 / 3.5) + math.log(0.5 / 3.5)) / 3)
