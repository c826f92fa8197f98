"""Tokenizers behind one small interface (:class:`lmlab.tokenizers.base.Tokenizer`). One file each, one registry line each.

>>> from lmlab.tokenizers import TOKENIZERS
>>> TOKENIZERS.names()
['bpe', 'char', 'lz78']
"""

from lmlab.registry import Registry

TOKENIZERS = Registry("tokenizer", {
    "char": "lmlab.tokenizers.char:CharTokenizer",
    "bpe": "lmlab.tokenizers.bpe:BPETokenizer",
    "lz78": "lmlab.tokenizers.lz78:LZ78Tokenizer",
})
