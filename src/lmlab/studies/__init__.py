"""One module per paper: experiment, analysis, figures, claims. One registry line each."""

from lmlab.registry import Registry

STUDIES = Registry("study", {
    "two-hop": "lmlab.studies.two_hop:TwoHopStudy",
    "extreme-tokens": "lmlab.studies.extreme_tokens:ExtremeTokensStudy",
    "reversal-curse": "lmlab.studies.reversal_curse:ReversalCurseStudy",
    "tokenization": "lmlab.studies.tokenization:TokenizationStudy",
})
