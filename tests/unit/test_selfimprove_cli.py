"""Bad input at the command line (issue 22's acceptance): a model without weights (an OpenAI endpoint) in the trained
role, or as a model whose refusals are counted, gives one `error:` line and starts nothing (writes nothing either)."""

import pytest
from typer.testing import CliRunner

from lmlab.cli import app

URL = "http://127.0.0.1:9/v1#m"  # never contacted: the capability check runs before anything is loaded


@pytest.mark.parametrize("args, words", [
    (["selfimprove", "safety-tune", "--model", URL], "no 'trainable' capability"),
    (["run", "tpo", "--quick", "--model", URL], "no 'trainable' capability"),
    (["run", "meta-rewarding", "--quick", "--model", URL], "no 'trainable' capability"),
    (["run", "tpo", "--quick", "--control", "--model", URL], "no 'trainable' capability"),
    (["run", "llm-sinks", "--quick", "--model", URL], "no 'weights' capability"),
    (["run", "llm-two-hop", "--quick", "--model", URL], "no 'trainable' capability"),
    (["run", "muli", "--quick", "--model", URL], "no 'logits' capability"),
    (["run", "reward-eval", "--quick", "--rm", "implicit", "--set", f"lm.model={URL}"], "no 'logits' capability"),
    (["selfimprove", "refusal", "--model", "default", "--model", URL], "no 'logits' capability"),
    (["selfimprove", "refusal", "--model", "/no/such/model-dir"], "does not exist"),
    (["selfimprove", "refusal", "--model", "dummy", "--set", "max_new_tokens=0"], "max_new_tokens"),
])
def test_bad_model_for_the_trained_or_judged_role_is_one_error_line(args, words, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], res.output
    # nothing was started or written: not even the run's config.json or an empty arm directory
    assert not out.exists() or not any(out.iterdir()), sorted(str(p.relative_to(out)) for p in out.rglob("*"))
