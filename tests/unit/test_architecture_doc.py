"""docs/architecture.md's "add a study" block is a working study: it appears in `lmlab list` and runs."""

import importlib
import json
import re
import sys
from pathlib import Path

from typer.testing import CliRunner

from lmlab.cli import app
from lmlab.studies import STUDIES

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _study_block() -> str:
    text = DOC.read_text()
    section = text[text.index("### A study"):text.index("### A task")]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_add_a_study_snippet(tmp_path, monkeypatch):
    (tmp_path / "coin_study.py").write_text(_study_block())
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("coin_study")
        runner = CliRunner()
        res = runner.invoke(app, ["list"])
        assert res.exit_code == 0 and "coin" in res.output
        res = runner.invoke(app, ["run", "coin", "--quick", "--out", str(tmp_path / "run")])
        assert res.exit_code == 0, res.output
        s = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert s["study"] == "coin" and s["n_pass"] == 1 and not s["control"]
        res = runner.invoke(app, ["run", "coin", "--quick", "--control", "--out", str(tmp_path / "ctl")])
        s = json.loads((tmp_path / "ctl" / "summary.json").read_text())
        assert s["control"] and s["n_fail"] == 1  # the negative control fails the claim
    finally:
        STUDIES.entries.pop("coin", None)
        sys.modules.pop("coin_study", None)
