"""One module per paper: experiment, analysis, figures, claims. One registry line each."""

from lmlab.registry import Registry

STUDIES = Registry("study", {
    "two-hop": "lmlab.studies.two_hop:TwoHopStudy",
    "extreme-tokens": "lmlab.studies.extreme_tokens:ExtremeTokensStudy",
    "tokenization": "lmlab.studies.tokenization:TokenizationStudy",
})
