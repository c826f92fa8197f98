"""The examples in docstrings run."""

import doctest
import importlib

import pytest

MODULES = ["lmlab.config", "lmlab.nn.hooks", "lmlab.nn.model", "lmlab.tasks.two_hop", "lmlab.tasks.bigram_backcopy",
           "lmlab.tasks.markov", "lmlab.tokenizers", "lmlab.tokenizers.char", "lmlab.tokenizers.lz78",
           "lmlab.analysis.extreme_tokens", "lmlab.analysis.curves", "lmlab.tasks.reversal", "lmlab.lm.dummy",
           "lmlab.rewardeval.metrics", "lmlab.rewardeval.data", "lmlab.rewardeval.builder",
           "lmlab.rewardeval.models.length", "lmlab.tasks.maze", "lmlab.nn.vqvae",
           "lmlab.routing.data", "lmlab.routing.synthetic", "lmlab.io", "lmlab.lm", "lmlab.lm.caching", "lmlab.claims",
           "lmlab.lm.weights"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0


def test_import_lmlab_does_no_work():
    import subprocess
    import sys

    code = "import sys, lmlab, lmlab.studies, lmlab.tasks; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"  # registries are lazy: importing them pulls in no torch
