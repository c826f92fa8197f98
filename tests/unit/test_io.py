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
