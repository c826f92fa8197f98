"""Every registered study at its ``tiny`` size with ``--device cuda``: run whenever torch sees a GPU (the ``gpu``
marker; skipped on CPU-only machines such as CI). A study that runs no model on a device refuses ``--device`` with
a one-line error; that refusal is checked instead (it needs no GPU)."""

from __future__ import annotations

import json

import pytest

from lmlab.config import ConfigError, LMConfig
from lmlab.studies import STUDIES
from lmlab.studies.runner import make_config, resolve_study, run_device

#: studies with nothing to put on a device (their config has no ``device`` field)
NO_DEVICE = {"ideal"}


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    from lmlab.lm.testing import tiny_model_dir

    return str(tiny_model_dir(tmp_path_factory.mktemp("tiny-lm")))


def _params():
    for name in sorted(STUDIES.names()):
        if name in NO_DEVICE:
            continue
        marks = [pytest.mark.gpu, pytest.mark.slow] + ([pytest.mark.model] if STUDIES.get(name).tiny_needs else [])
        yield pytest.param(name, marks=marks)


@pytest.mark.parametrize("name", list(_params()))
def test_tiny_run_on_cuda(name, tmp_path, request, monkeypatch):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    study = resolve_study(name)
    kw = {}
    if isinstance(getattr(study.quick_config(), "lm", None), LMConfig) and not any(
            o.startswith("lm.model=") for o in study.tiny):
        kw["model"] = request.getfixturevalue("tiny_lm_dir")
    cfg = make_config(study, quick=True, overrides=list(study.tiny), device="cuda", **kw)
    assert run_device(cfg) == "cuda"
    summary = study.run(cfg, tmp_path / "run", quick=True)
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["study"] == name and written["claims"]
    assert {c.status for c in summary.claims} <= {"pass", "fail", "not_comparable"}
    assert "cuda" in json.dumps(written["config"])


@pytest.mark.parametrize("name", sorted(NO_DEVICE))
def test_studies_without_a_device_refuse_it_in_one_line(name):
    with pytest.raises(ConfigError, match=f"--device: study '{name}' runs no model on a device"):
        make_config(resolve_study(name), quick=True, device="cuda")


def test_no_device_list_is_current():
    """NO_DEVICE lists exactly the studies whose config has no device field."""
    from lmlab.config import set_everywhere

    none = {n for n in STUDIES.names()
            if not set_everywhere(resolve_study(n).quick_config(), "device", "cpu")[1]}
    assert none == NO_DEVICE
