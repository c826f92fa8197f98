"""CLI options that fail fast, before any work."""

from typer.testing import CliRunner

from lmlab.cli import app


def test_negative_threads_is_refused_with_one_line(tmp_path):
    res = CliRunner().invoke(app, ["run", "reversal-curse", "--quick", "--threads", "-1", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--threads must be >= 0" in res.output
    assert not any(tmp_path.iterdir())  # nothing was started


def test_unknown_study_suggests_the_closest_name(tmp_path):
    res = CliRunner().invoke(app, ["run", "reversal-curs", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "did you mean 'reversal-curse'" in res.output


def test_threads_limit_torch_and_numpy_blas():
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from lmlab import cli

    n = torch.get_num_threads()
    try:
        with threadpool_limits(limits=None):  # restores the BLAS limits on exit
            cli._set_threads(1)
            assert torch.get_num_threads() == 1
            assert all(p["num_threads"] == 1 for p in threadpool_info())
    finally:
        torch.set_num_threads(n)
