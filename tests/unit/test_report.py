"""The HTML report: autoescaped, claims that hold without training apart, the control run beside the real one."""

import json

from lmlab.report import build_report

EVIL = "<script>alert(1)</script>"


def _summary(path, study, claims, seed=0, control=False, figures=()):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({
        "study": study, "claims": claims, "seed": seed, "quick": True, "control": control, "seconds": 1.0,
        "task_version": "t/1", "figures": list(figures), "metrics": {"x": EVIL}, "config": {}, "provenance": {}}))


def _claim(id, status, **kw):
    return {"id": id, "claim": f"claim {id}", "paper_value": 1.0, "measured": 0.9, "tolerance": ">= 0.5",
            "status": status, **kw}


def test_malicious_names_and_status_are_escaped(tmp_path):
    _summary(tmp_path / "runs" / "bad", EVIL, [_claim(EVIL, EVIL)], seed=EVIL, figures=["../../etc/passwd"])
    out, n = build_report(tmp_path / "runs", tmp_path / "r.html")
    page = out.read_text()
    assert n == 1 and "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "missing figure: ../../etc/passwd" in page  # a figure outside the run directory is never read


def test_held_claims_apart_and_control_beside_the_real_run(tmp_path):
    runs = tmp_path / "runs"
    _summary(runs / "real", "two-hop", [_claim("learns", "pass"),
                                        _claim("data-prop", "pass", holds_without_training=True,
                                               holds_reason="the metric's floor")])
    _summary(runs / "ctrl", "two-hop", [_claim("learns", "fail"), _claim("data-prop", "pass")], control=True)
    page = build_report(runs, tmp_path / "r.html")[0].read_text()
    overview, held = page.split("Claims that hold without training")[0], page.split("Claims that hold without training")[1]
    assert "data-prop" in held.split("</table>")[0] and "the metric&#39;s floor" in held
    row = next(r for r in overview.split("<tr>") if "learns" in r and "real" in r)
    assert row.index(">pass<") < row.index(">fail<")  # the control's status sits beside the real one
    assert "control run of <a href='#real'>real</a>" in page


def test_counts_per_run_and_stages(tmp_path):
    runs = tmp_path / "runs"
    _summary(runs / "real", "two-hop", [_claim("a", "pass"), _claim("b", "fail"), _claim("c", "not_comparable"),
                                        _claim("d", "pass", holds_without_training=True, holds_reason="r")])
    _summary(runs / "ctrl", "two-hop", [_claim("a", "fail"), _claim("b", "fail"), _claim("c", "not_comparable"),
                                        _claim("d", "pass")], control=True)
    s = json.loads((runs / "real" / "summary.json").read_text())
    s["stages"] = {"transformer": {"computed": False, "fingerprint": "abcdef0123456789ffff",
                                   "reason": "reused: a finished run with the same fingerprint"},
                   "probe": {"computed": True, "fingerprint": "0011", "reason": "recomputed because lmlab.nn changed"},
                   "odd": EVIL}
    (runs / "real" / "summary.json").write_text(json.dumps(s))
    page = build_report(runs, tmp_path / "r.html")[0].read_text()
    per_run = page.split("<h2>Per run</h2>")[1].split("</table>")[0]
    row = next(r for r in per_run.split("<tr>") if "#real" in r)
    assert "2 pass · 1 fail · 1 not comparable · 1 hold without training" in row
    assert "1 pass · 2 fail · 1 not comparable · 0 hold without training" in row  # the control's counts beside
    assert "1 computed now, 1 reused" in row and "#ctrl'>ctrl</a>: " in row
    assert not any("#ctrl'>ctrl</a></td><td>two-hop" in r for r in per_run.split("<tr>"))  # paired control not repeated
    section = page.split("<h2 id='real'>")[1].split("<h2 id=")[0]
    assert "<td>transformer</td><td>reused</td><td><code>abcdef0123456789</code></td>" in section
    assert "<td>odd</td><td>unknown</td>" in section and "recomputed because lmlab.nn changed" in section and "<script>" not in page  # a bad record is escaped
    ctrl = page.split("<h2 id='ctrl'>")[1].split("<h2 id=")[0]
    assert "stages: not recorded" in ctrl


def test_header_shows_the_commit_at_the_end_when_it_moved(tmp_path):
    runs = tmp_path / "runs"
    _summary(runs / "moved", "two-hop", [_claim("a", "pass")])
    _summary(runs / "still", "two-hop", [_claim("a", "pass")])
    for name, prov in (("moved", {"git_commit": "aaaaaaaaaaaa11", "git_dirty": False,
                                  "git_at_end": {"git_commit": "bbbbbbbbbbbb22", "git_dirty": True}}),
                       ("still", {"git_commit": "cccccccccccc33", "git_dirty": False})):
        s = json.loads((runs / name / "summary.json").read_text())
        s["provenance"] = prov
        (runs / name / "summary.json").write_text(json.dumps(s))
    page = build_report(runs, tmp_path / "r.html")[0].read_text()
    header = next(p for p in page.split("<p>task ")[1:] if "aaaaaaaaaa" in p).split("</p>")[0]
    assert "commit aaaaaaaaaa" in header and "at the end: commit bbbbbbbbbb, uncommitted changes" in header
    still = next(p for p in page.split("<p>task ")[1:] if "cccccccccc" in p).split("</p>")[0]
    assert "at the end" not in still and "changed while it ran" not in still
