import numpy as np
import pytest

from lmlab.io import atomic_path, atomic_write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = atomic_write_text(tmp_path / "a.json", "old")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]


def test_numpy_writers_keep_the_target_name(tmp_path):
    for name, save in (("x.npy", np.save), ("y.npz", lambda f, a: np.savez(f, a=a))):
        with atomic_path(tmp_path / "sub" / name) as tmp:
            save(tmp, np.arange(3))
    assert sorted(x.name for x in (tmp_path / "sub").iterdir()) == ["x.npy", "y.npz"]
    assert np.load(tmp_path / "sub" / "x.npy").tolist() == [0, 1, 2]


def test_fingerprint_is_stable_and_length_prefixed():
    from lmlab.io import fingerprint

    assert fingerprint("a", {"x": 1, "y": 2}) == fingerprint("a", {"y": 2, "x": 1})
    assert fingerprint("ab", "c") != fingerprint("a", "bc") and len(fingerprint("a")) == 16


def _module(root, name, body):
    (root / f"{name}.py").write_text(body)


def test_editing_a_declared_module_invalidates_and_an_unrelated_one_does_not(tmp_path, monkeypatch, caplog):
    import importlib

    from lmlab.io import ArtifactCache

    src = tmp_path / "src"
    src.mkdir()
    _module(src, "lmlab_dep_mod", "def f(x):\n    return x + 1\n")
    _module(src, "lmlab_other_mod", "def g(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(src))
    importlib.invalidate_caches()
    calls = []

    def compute(idx):
        calls.extend(idx)
        return [(idx, [np.full(2, i, dtype=np.float32) for i in idx])]

    def cache():
        return ArtifactCache("art", model="m", config={"n": 1}, code=("lmlab_dep_mod",), root=tmp_path / "c",
                             label="demo")

    cache().map(["x", "y"], compute)
    assert calls == [0, 1]
    _module(src, "lmlab_other_mod", "def g(x):\n    return 2 * x\n")  # not declared: still a hit
    c = cache()
    assert c.map(["x", "y"], compute)[1].tolist() == [1, 1] and calls == [0, 1] and c.stats["cached"] == 2
    _module(src, "lmlab_dep_mod", "def f(x):\n    '''Docs only.'''\n    return x + 1  # a comment\n")
    assert cache().map(["x"], compute) and calls == [0, 1]  # docstrings and comments are not code
    _module(src, "lmlab_dep_mod", "def f(x):\n    return x + 2\n")  # declared: recomputed, and the log says why
    c = cache()
    with caplog.at_level("WARNING", logger="lmlab.cache"):
        c.map(["x", "y"], compute)
    assert calls == [0, 1, 0, 1] and c.stats == {"computed": 2, "cached": 0}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "code of lmlab_dep_mod changed" in lines[0] and "demo" in lines[0]
    assert len(c) == 2  # the entries of the edited code's key were dropped, not kept beside the new ones


def test_artifact_cache_config_change_is_explained_and_switching_back_hits(tmp_path, caplog):
    from lmlab.io import ArtifactCache

    def compute(idx):
        return [(idx, [{"i": i} for i in idx])]

    a = ArtifactCache("k", model="m", config={"t": 1}, root=tmp_path)
    assert a.map(["p"], compute) == [{"i": 0}]
    b = ArtifactCache("k", model="m", config={"t": 2}, root=tmp_path)
    with caplog.at_level("WARNING", logger="lmlab.cache"):
        b.map(["p"], compute)
    assert "config t: 1 -> 2" in caplog.records[-1].getMessage()
    again = ArtifactCache("k", model="m", config={"t": 1}, root=tmp_path)
    again.map(["p"], compute)
    assert again.stats == {"computed": 0, "cached": 1}
    off = ArtifactCache.off()
    assert off.map(["p"], compute) == [{"i": 0}] and len(off) == 0 and not off.enabled
    # the records for summary.json's stages
    assert a.stage() == {"computed": True, "fingerprint": a.digest, "reason": "computed now (1 entries)",
                         "n_computed": 1, "n_reused": 0}
    assert b.stage()["reason"] == "computed now (1 entries): earlier ones not used because config t: 1 -> 2"
    assert again.stage()["computed"] is False and again.stage()["fingerprint"] == a.digest
    assert off.stage()["fingerprint"] == "" and off.stage()["reason"] == "computed now (1 entries) (no cache)"


def test_unknown_module_in_a_code_declaration_is_an_error(tmp_path):
    from lmlab.io import ArtifactCache

    with pytest.raises(ValueError, match="no_such_module_xyz"):
        ArtifactCache("k", code=("no_such_module_xyz",), root=tmp_path)
