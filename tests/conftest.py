import os

# Under pytest-xdist (`make test`: one process per core) each process gets one thread: a second thread per
# process would only wait for a busy core. Set before torch (and its OpenMP) is imported.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tests never touch a hub, and use few threads so they behave the same on 2-core CI.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


@pytest.fixture
def one_thread():
    """Tiny models: a second thread only waits for a busy core on a shared machine (10x slower seen)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


#: The files that take longest, longest first. `make test` hands whole files to its processes in collection order
#: (pytest-xdist --dist loadfile --no-loadscope-reorder), so these start first and the many short files fill in
#: beside them, instead of a long file starting last (xdist's default order, by number of tests per file, put the
#: one-test kill-and-resume file near the end). Files not listed keep their order after these.
LONGEST_FIRST = (
    "integration/test_sweep.py",
    "integration/test_sweep_resume.py",
    "integration/test_ddp.py",
    "integration/test_controls.py",
)


def _longest_first(item) -> int:
    path = item.nodeid.split("::", 1)[0].removeprefix("tests/")
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_longest_first)  # stable: the order within a file, and of the other files, is kept
    if os.environ.get("LMLAB_MODEL_TESTS") != "1":
        skip_model = pytest.mark.skip(reason="loads the real model wheels; run `make test-model`")
        for item in items:
            if item.get_closest_marker("model"):
                item.add_marker(skip_model)
    if not torch.cuda.is_available():
        skip_gpu = pytest.mark.skip(reason="needs a CUDA device; none present")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)
