"""sweep-claims.png plots a dict-valued claim by its first numeric leaf that varies over the seeds."""

from lmlab.report import sweep_figures


def test_dict_valued_claim_is_plotted_by_its_first_leaf(tmp_path, monkeypatch):
    import matplotlib.axes

    plotted = []
    orig = matplotlib.axes.Axes.scatter
    monkeypatch.setattr(matplotlib.axes.Axes, "scatter",
                        lambda self, x, y, *a, **k: (plotted.append((self.get_title(), list(y))), orig(self, x, y, *a, **k))[1])
    claim = {"seeds": [0, 1], "statuses": ["pass", "fail"], "paper_value": "qualitative",
             "measured": [{"rho": -0.7, "step": 100}, {"rho": -0.3, "step": 100}],
             "measured_leaves": {"rho": {"mean": -0.5, "ci95": [-0.7, -0.3]}, "step": {"mean": 100, "ci95": [100, 100]}}}
    summary = {"points": [{"grid": {}, "claims": {"mr": claim}}]}
    assert sweep_figures(summary, tmp_path) == ["sweep-claims.png"] and (tmp_path / "sweep-claims.png").is_file()
    assert sorted(y for _, ys in plotted for y in ys) == [-0.7, -0.3]


def test_a_leaf_constant_over_seeds_is_skipped(tmp_path, monkeypatch):
    """prompt-cache's target_error_bound plotted its configured bound (0.02 on every seed) before the measured rate."""
    import matplotlib.axes

    plotted = []
    orig = matplotlib.axes.Axes.scatter
    monkeypatch.setattr(matplotlib.axes.Axes, "scatter",
                        lambda self, x, y, *a, **k: (plotted.append(list(y)), orig(self, x, y, *a, **k))[1])
    claim = {"seeds": [0, 1], "statuses": ["pass", "fail"], "paper_value": "<= bound",
             "measured": [{"bound": 0.02, "error": 0.01}, {"bound": 0.02, "error": 0.17}],
             "measured_leaves": {"bound": {"mean": 0.02, "ci95": [0.02, 0.02], "min": 0.02, "max": 0.02},
                                 "error": {"mean": 0.09, "ci95": [0.01, 0.17], "min": 0.01, "max": 0.17}}}
    sweep_figures({"points": [{"grid": {}, "claims": {"teb": claim}}]}, tmp_path)
    assert sorted(y for ys in plotted for y in ys) == [0.01, 0.17]
