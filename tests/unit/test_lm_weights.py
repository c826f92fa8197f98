"""lmlab.lm.weights: a model's weights identified without loading them; the same files give the same
fingerprint (read once, then taken from the cache), a model re-saved at the same path gives another."""

from __future__ import annotations

import pytest

from lmlab.io import artifact_fingerprint, stale_reason
from lmlab.lm.weights import weights_fingerprint


def test_same_path_other_weights_other_fingerprint(tmp_path, monkeypatch):
    from lmlab.lm import weights as W
    from lmlab.lm.testing import tiny_model_dir

    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    path = tiny_model_dir(tmp_path / "m", seed=0)
    a = weights_fingerprint(str(path))
    assert a.startswith("files:") and (tmp_path / "cache" / "file-hashes.json").exists()

    def no_rehash(p, chunk=0):
        raise AssertionError(f"re-hashed {p}")

    with monkeypatch.context() as m:
        m.setattr(W, "_sha256_file", no_rehash)
        assert weights_fingerprint(str(path)) == a  # unchanged files: hashes from the cache, nothing re-read
    tiny_model_dir(path, seed=1)  # another checkpoint written at the same path
    b = weights_fingerprint(str(path))
    assert b != a
    old = artifact_fingerprint(["lmlab.io"], {"k": 1}, model=a)
    assert stale_reason(old, artifact_fingerprint(["lmlab.io"], {"k": 1}, model=b)) == "model weights changed"
    assert stale_reason(old, artifact_fingerprint(["lmlab.io"], {"k": 1}, model=a)) is None
    # artifacts no model made keep their digest
    assert "model" not in artifact_fingerprint(["lmlab.io"], {"k": 1})


@pytest.mark.parametrize("spec,prefix", [("dummy", "dummy:"), ("https://h/v1#m", "remote:"),
                                         ("no-such-org/no-such-model-xyz", "unresolved:")])
def test_specs_without_local_files(spec, prefix, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights_fingerprint(spec).startswith(prefix)
