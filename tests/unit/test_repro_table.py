"""scripts/repro_table.py --write-docs on a small synthetic sweep: one commit per spread, verdicts, idempotent."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "repro_table.py"
PINNED, OLD = "5ff543f" + "0" * 33, "932ab14" + "0" * 33


@pytest.fixture(scope="module")
def rt():
    spec = importlib.util.spec_from_file_location("repro_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["repro_table"] = mod  # its dataclasses look their module up while being defined
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("repro_table", None)


def _claim(cid, status, measured, tolerance=">= 0.9"):
    return {"id": cid, "claim": f"claim {cid}", "paper_value": 0.95, "measured": measured, "tolerance": tolerance,
            "status": status}


def _trial(sweep, seed, commit, claims, mtime=None):
    run = sweep / "runs" / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "study": "toy", "claims": claims, "seed": seed, "quick": True, "task_version": "t/1", "config": {},
        "provenance": {"git_commit": commit, "git_dirty": False}}))
    (run / "sweep-trial.json").write_text(json.dumps({"trial": f"seed{seed}", "seed": seed, "point": {}}))
    if mtime is not None:
        os.utime(run / "summary.json", (mtime, mtime))


def _setup(tmp_path):
    """Seeds 0-4 at the pinned commit (sink passes on 4, peak on none, nc never testable), seed 5 at an old commit
    (its pass must not count), seed 6 asked for but not finished."""
    sweep = tmp_path / "runs" / "toy"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"study": "toy", "seeds": list(range(7)), "grid": {}, "quick": True}))
    (sweep / "sweep-summary.json").write_text(json.dumps({"holds_share": 0.8, "points": []}))
    sink = [0.95, 0.97, 0.5, 0.93, 0.96]
    for seed in range(5):
        _trial(sweep, seed, PINNED, [
            _claim("sink", "pass" if sink[seed] >= 0.9 else "fail", sink[seed], f">= 0.9 (seed {seed})"),
            _claim("peak", "fail", {"ratio": 1.5 + seed / 10, "layer": 1}),
            _claim("nc", "not_comparable", None, "needs the full config"),
            {**_claim("count", "pass", 1.0, "<= 2"), "holds_without_training": True, "holds_reason": "a count"}])
    _trial(sweep, 5, OLD, [_claim("sink", "pass", 0.99), _claim("peak", "pass", {"ratio": 99.0, "layer": 1}),
                           _claim("nc", "not_comparable", None)])
    docs = tmp_path / "docs"
    (docs / "studies").mkdir(parents=True)
    (docs / "reproducibility.md").write_text(
        "# Reproducibility\n\n## The table\n\n<!-- repro-table:start -->\n"
        "| (not yet run) |\n<!-- repro-table:end -->\n\n## Measured so far\n\nkept\n")
    (docs / "studies" / "toy.md").write_text("# Toy\n\n## Claims\n\n- `sink`: hand-written line stays.\n")
    (docs / "studies" / "other.md").write_text("# Other\n")
    return tmp_path / "runs", docs, sweep


def test_writes_one_commit_per_spread_and_is_idempotent(rt, tmp_path):
    root, docs, sweep = _setup(tmp_path)
    changed = rt.write_docs(root, docs, commit="5ff543f")
    assert sorted(p.name for p in changed) == ["reproducibility.md", "toy.md"]
    page = (docs / "reproducibility.md").read_text()
    table = page.split(rt.TABLE_START)[1].split(rt.TABLE_END)[0]
    assert "(not yet run)" not in table and page.endswith("## Measured so far\n\nkept\n")  # only the marked part
    sink = next(r for r in table.splitlines() if "`sink`" in r)
    # 4 of the 5 pinned seeds pass; the old commit's seed 5 is left out of the count, the mean and the seeds
    assert "| 5ff543f |" in sink and "| 4/5 |" in sink and "holds (4 of 5)" in sink and "5 P" not in sink
    assert "0.862 [0.5 - 0.97]" in sink
    peak = next(r for r in table.splitlines() if "`peak`" in r)
    assert "fails (0 of 5)" in peak and "ratio 1.7 [1.5 - 1.9]" in peak
    assert "| not comparable |" in next(r for r in table.splitlines() if "`nc`" in r)
    assert "seed5 (932ab14)" in table and "not finished yet: seed6" in table and "No sweep yet: other." in table
    study = (docs / "studies" / "toy.md").read_text()
    assert study.startswith("# Toy\n\n## Claims\n\n- `sink`: hand-written line stays.\n\n" + rt.SEEDS_START)
    assert "### Over seeds (lmlab sweep, commit 5ff543f)" in study
    assert "- `sink`: rule: >= 0.9 (seed 0). Seeds 0 P, 1 P, 2 F, 3 P, 4 P: 4/5 pass" in study
    assert "`count` (hwt)" in table and "- `count`: rule: <= 2. Holds without training: a count. Seeds" in study
    assert "- `nc`: rule: needs the full config." in study and "Left out, another commit: seed5 (932ab14)." in study
    before = {p: p.read_text() for p in docs.rglob("*.md")}
    assert rt.write_docs(root, docs, commit="5ff543f") == []  # a second run changes nothing
    assert rt.main(["--write-docs", "--root", str(root), "--docs", str(docs), "--commit", "5ff543f", "--check"]) == 0
    assert {p: p.read_text() for p in docs.rglob("*.md")} == before


def test_majority_commit_fewer_seeds_and_check(rt, tmp_path):
    root, docs, sweep = _setup(tmp_path)
    for seed in (3, 4):  # now 3 pinned seeds: a verdict says how many, and whether 4 of 5 is still reachable
        for f in (sweep / "runs" / f"seed{seed}").iterdir():
            f.unlink()
        (sweep / "runs" / f"seed{seed}").rmdir()
    assert rt.main(["--write-docs", "--root", str(root), "--docs", str(docs), "--check"]) == 1  # would change
    rt.write_docs(root, docs)  # no --commit: the commit most trials ran at (3 at 5ff543f vs 1 at 932ab14)
    table = (docs / "reproducibility.md").read_text()
    sink = next(r for r in table.splitlines() if "`sink`" in r)
    assert "| 5ff543f |" in sink and "3 seeds: not yet 5 (2 of 3 pass)" in sink
    peak = next(r for r in table.splitlines() if "`peak`" in r)
    assert "3 seeds: not yet 5 (0 of 3 pass; cannot reach 4 of 5)" in peak
    assert "not finished yet: seed3, seed4, seed6" in table
    # pinned to a commit no trial ran at: nothing is combined, everything is listed as left out
    rt.write_docs(root, docs, commit="abcdef1")
    table = (docs / "reproducibility.md").read_text()
    assert "(no finished trial at abcdef1 yet)" in table and "seed0 (5ff543f)" in table


def test_verdicts(rt):
    def a(statuses, errors=0):
        return {"n_runs": len(statuses), "n_pass": statuses.count("pass"),
                "n_not_comparable": statuses.count("not_comparable"), "n_errors": errors}
    assert rt.verdict(a(["pass"] * 4 + ["fail"]), 0.8) == "holds (4 of 5)"
    assert rt.verdict(a(["pass"] * 3 + ["fail"] * 2), 0.8) == "not established (3 of 5)"
    assert rt.verdict(a(["pass"] * 4, errors=1), 0.8) == "holds (4 of 5)"
    assert rt.verdict(a(["pass"] * 3, errors=2), 0.8) == "not established (3 of 5)"  # a crash counts as no pass
    assert rt.verdict(a(["pass"] * 4 + ["not_comparable"]), 0.8) == "4 seeds: not yet 5 (4 of 4 pass, 1 not comparable)"
    assert rt.verdict(a(["pass", "fail"]), 0.8) == "2 seeds: not yet 5 (1 of 2 pass)"
    assert rt.verdict(a(["not_comparable"] * 3), 0.8) == "not comparable"


def test_archive_carried_rows_and_per_study_commit(rt, tmp_path):
    root, docs, sweep = _setup(tmp_path)
    rt.write_docs(root, docs, commit="5ff543f", root_label="R")
    # the run directories go away (a new machine): archive first, then regenerate from the archive alone
    archived = rt.archive(root, tmp_path / "results")
    assert {p.name for p in archived} == {"sweep.json", "sweep-summary.json", "summary.json", "sweep-trial.json"}
    assert rt.archive(root, tmp_path / "results") == []  # unchanged files are not copied again
    before = (docs / "reproducibility.md").read_text()
    assert rt.write_docs([tmp_path / "results"], docs, commit="5ff543f", root_label="R") == []  # same table from the archive
    # a study with rows in the table but no sweep under any root keeps its rows and notes, said below the table
    empty = tmp_path / "empty"
    empty.mkdir()
    rt.write_docs([empty], docs, commit="5ff543f")
    after = (docs / "reproducibility.md").read_text()
    rows = [r for r in before.splitlines() if r.startswith("| toy |")]
    assert rows and all(r in after for r in rows)
    assert "Carried over unchanged from the previous table" in after and "- toy: left out, another commit" in after
    assert "No sweep yet: other." in after
    # per-study commit: toy pinned to the old commit combines only seed 5
    assert rt.parse_commits(["5ff543f", "toy=932ab14"]) == {"*": "5ff543f", "toy": "932ab14"}
    assert rt.parse_commits(["5ff543f"]) == "5ff543f"
    rt.write_docs(root, docs, commit={"*": "5ff543f", "toy": "932ab14"})
    sink = next(r for r in (docs / "reproducibility.md").read_text().splitlines() if "`sink`" in r)
    assert "| 932ab14 |" in sink and "5 P" in sink
    # the same study under two roots is refused
    with pytest.raises(SystemExit, match="both"):
        rt.write_docs([root, tmp_path / "results"], docs)
