"""The reproducibility table from sweep directories (``lmlab sweep ... --out runs/reproducibility/STUDY``).

Two modes.

Print (unchanged): markdown rows, one per claim, read from each sweep's ``sweep-summary.json``: passes over the
seeds that ran, each seed's status, mean [min - max] and per-seed measured values (for a dict-valued measurement,
its first numbers, named), the paper's value, and whether the claim holds (passes on at least the sweep's
``holds_share`` of its seeds; with 3 seeds and the default 0.8 that is 3 of 3)::

    PYTHONPATH=src python scripts/repro_table.py runs/reproducibility/*/

Write the docs (``--write-docs``): rewrites, between marker comments, the five-seed table of
``docs/reproducibility.md`` and an "Over seeds" section of each swept study's ``docs/studies/STUDY.md`` (every
claim with its rule, seeds, passes and spread). It reads every trial's own ``summary.json`` and combines only the
trials that ran at one commit (``--commit``, or each study's most common one), listing the others as left out.
Running it twice changes nothing::

    PYTHONPATH=src python scripts/repro_table.py --write-docs --root /work/runs/reproducibility --commit 5ff543f

Archive (``--archive DEST``): copy each sweep's small files (specs, summaries, each trial's ``summary.json``) into
``DEST`` (committed: ``results/reproducibility``), so that the table can be regenerated after the run directories
are gone; several ``--root`` may be given, and ``--commit STUDY=C`` pins one study's commit::

    PYTHONPATH=src python scripts/repro_table.py --root /work/runs/reproducibility --archive results/reproducibility
    PYTHONPATH=src python scripts/repro_table.py --write-docs --root results/reproducibility \\
        --commit 5ff543f --commit reward-eval=c058aa2
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _num(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v else None


def _f(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def _values(a: dict, n_leaves: int) -> tuple[str, str]:
    """(mean [min - max], per-seed values) of a claim: its scalar, or the first numbers of a dict measurement."""
    from lmlab.claims import leaf_aggregates, numeric_leaves

    nums = [_num(m) for m in a["measured"]]
    if all(v is not None for v in nums) and nums:
        return (f"{_f(sum(nums) / len(nums))} [{_f(min(nums))} - {_f(max(nums))}]",
                ", ".join(_f(v) for v in nums))
    leaves = leaf_aggregates(a["measured"])
    if not leaves:
        return "-", "-"
    keys = list(leaves)[:n_leaves]
    mean = "; ".join(f"{k} {_f(leaves[k]['mean'])} [{_f(leaves[k]['min'])} - {_f(leaves[k]['max'])}]" for k in keys)
    per = "; ".join(f"{k} " + ", ".join(_f(numeric_leaves(m).get(k)) for m in a["measured"]) for k in keys)
    return mean, per


def rows(sweep_dir: Path, n_leaves: int = 2) -> list[str]:
    s = json.loads((sweep_dir / "sweep-summary.json").read_text())
    out = []
    for p in s["points"]:
        for cid, a in p["claims"].items():
            mean, per = _values(a, n_leaves)
            marks = " ".join({"pass": "P", "fail": "F", "not_comparable": "nc"}.get(st, st) for st in a["statuses"])
            seeds = ", ".join(str(x) for x in a["seeds"])
            n = a["n_runs"] + a.get("n_errors", 0)
            if s.get("n_pending"):
                verdict = f"incomplete: {s.get('n_done', 0)} of {s.get('n_trials', 0)} trials done"
            elif a["pass_rate"] is None:
                verdict = "not comparable"
            else:
                verdict = "holds" if a["holds"] else ("not established" if a["n_pass"] else "fails")
            paper = a["paper_value"]
            paper = _f(_num(paper)) if _num(paper) is not None else json.dumps(paper)[:60]
            out.append(f"| {s['study']} | `{cid}` | {a['n_pass']}/{n} | {seeds}: {marks} | {mean} | {per} | {paper} "
                       f"| {verdict} |")
        for e in p.get("errors", []):
            out.append(f"| {s['study']} | trial {e['trial']} (seed {e['seed']}) failed | | | | {e['error'][:80]} | | |")
    return out



# -- writing the docs (``--write-docs``) -----------------------------------------------------------------------
#
# The docs' seed spreads are generated from the sweeps' run directories, never typed: each trial's summary.json
# says which commit computed it (``provenance.git_commit``), and a spread combines trials of one commit only
# (the pinned one, or the one most trials of the study ran at); the others are listed as excluded.

TABLE_START, TABLE_END = "<!-- repro-table:start -->", "<!-- repro-table:end -->"
SEEDS_START, SEEDS_END = "<!-- repro-seeds:start -->", "<!-- repro-seeds:end -->"
TARGET_SEEDS = 5  # the reproducibility table's number of seeds (issue 24: a claim holds at >= 4 of 5)
MARKS = {"pass": "P", "fail": "F", "not_comparable": "nc"}


@dataclass
class RunTrial:
    name: str
    seed: int
    commit: str  # short hash, "+dirty" appended for a run from an uncommitted tree
    summary: Any  # lmlab.claims.Summary
    point: dict


@dataclass
class StudySweep:
    study: str
    path: Path
    holds_share: float
    commit: str | None  # the commit whose trials are reported (None: no finished trial at all)
    kept: list[RunTrial]
    excluded: list[RunTrial]  # finished at another commit
    pending: list[str]  # asked for in sweep.json, no summary.json yet
    errors: list[str]  # trials whose last attempt raised (DIR/errors/<trial>.txt)
    claims: dict = field(default_factory=dict)  # per grid-point label: lmlab.claims.aggregate over the kept trials
    held: dict = field(default_factory=dict)  # claim id -> its holds_without_training reason (any kept trial)


def _commit_of(summary_dict: dict) -> str:
    prov = summary_dict.get("provenance") or {}
    c = str(prov.get("git_commit") or "unknown")[:7]
    return c + ("+dirty" if prov.get("git_dirty") else "")


def _point_label(point: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(point.items()))


def collect(sweep_dir: Path, commit: str | None = None) -> StudySweep:
    """The finished trials of one sweep directory, split by the commit that ran them."""
    from lmlab.claims import HOLDS_SHARE, Summary, aggregate

    spec = json.loads((sweep_dir / "sweep.json").read_text())
    holds_share = HOLDS_SHARE
    if (sweep_dir / "sweep-summary.json").is_file():
        holds_share = json.loads((sweep_dir / "sweep-summary.json").read_text()).get("holds_share", HOLDS_SHARE)
    finished: list[RunTrial] = []
    for run in sorted((sweep_dir / "runs").glob("*/summary.json")):
        d = json.loads(run.read_text())
        trial_file = run.parent / "sweep-trial.json"
        point = json.loads(trial_file.read_text()).get("point", {}) if trial_file.is_file() else {}
        finished.append(RunTrial(run.parent.name, int(d.get("seed", -1)), _commit_of(d), Summary.from_dict(d), point))
    counts: dict[str, int] = {}
    for t in finished:
        counts[t.commit] = counts.get(t.commit, 0) + 1
    if commit:
        chosen = next((c for c in counts if c.startswith(commit) and not c.endswith("+dirty")), commit[:7])
    else:  # the commit most trials ran at; a tie goes to the newest trial's commit
        newest: dict[str, float] = {}
        for t in finished:
            mtime = (sweep_dir / "runs" / t.name / "summary.json").stat().st_mtime
            newest[t.commit] = max(newest.get(t.commit, 0.0), mtime)
        chosen = max(counts, key=lambda c: (counts[c], newest[c])) if counts else None
    kept = sorted((t for t in finished if t.commit == chosen), key=lambda t: (t.seed, t.name))
    excluded = sorted((t for t in finished if t.commit != chosen), key=lambda t: (t.seed, t.name))
    names = {t.name for t in finished}
    asked = _asked_trials(spec)
    pending = [n for n in asked if n not in names]
    errors = sorted(p.stem for p in (sweep_dir / "errors").glob("*.txt")) if (sweep_dir / "errors").is_dir() else []
    out = StudySweep(spec["study"], sweep_dir, holds_share, chosen, kept, excluded, pending, errors)
    points: dict[str, list[RunTrial]] = {}
    for t in kept:
        points.setdefault(_point_label(t.point), []).append(t)
        for c in t.summary.claims:
            if c.holds_without_training:
                out.held.setdefault(c.id, c.holds_reason)
    for label, ts in points.items():
        # a trial that raised counts as not passing, as in the sweep itself; its point is read from its name
        n_err = sum(1 for e in errors if e not in {t.name for t in kept} and _point_of_name(e) == label)
        out.claims[label] = aggregate([t.summary for t in ts], holds_share, n_errors=n_err)
    return out


def _asked_trials(spec: dict) -> list[str]:
    try:
        from lmlab.sweep import SweepSpec

        fields = SweepSpec.__dataclass_fields__
        return [t.name for t in SweepSpec(**{k: v for k, v in spec.items() if k in fields}).trials()]
    except Exception:  # an older sweep.json: seeds only
        return [f"seed{s}" for s in spec.get("seeds", [])]


def _point_of_name(name: str) -> str:
    parts = name.split("-", 1)
    if len(parts) == 1:
        return ""
    return " ".join(sorted(p for p in parts[1].split("-") if "=" in p))


def _spread(a: dict) -> tuple[str, str]:
    """(mean [min - max], 95% bootstrap CI of the mean) of a claim's measured values over the kept trials."""
    mean, _ = _values(a, 2)
    ci = a.get("measured_ci95")
    if ci:
        return mean, f"[{_f(ci[0])}, {_f(ci[1])}]"
    leaves = a.get("measured_leaves") or {}
    cis = [f"{k} [{_f(v['ci95'][0])}, {_f(v['ci95'][1])}]" for k, v in list(leaves.items())[:2] if v.get("ci95")]
    return mean, "; ".join(cis) or "-"


def verdict(a: dict, holds_share: float, target: int = TARGET_SEEDS) -> str:
    """holds / fails / not established at ``target`` seeds or more; below that, the seeds so far and whether the
    claim can still reach the bar; not comparable when no seed could test it."""
    n = a["n_runs"] - a["n_not_comparable"] + a.get("n_errors", 0)
    k = a["n_pass"]
    if n == 0:
        return "not comparable"
    nc = f", {a['n_not_comparable']} not comparable" if a["n_not_comparable"] else ""
    if n >= target:
        if k / n >= holds_share:
            return f"holds ({k} of {n}{nc})"
        return f"fails (0 of {n}{nc})" if k == 0 else f"not established ({k} of {n}{nc})"
    need = math.ceil(holds_share * target - 1e-9)
    text = f"{n} seed{'s' if n != 1 else ''}: not yet {target} ({k} of {n} pass{nc}"
    if n - k > target - need:
        text += f"; cannot reach {need} of {target}"
    return text + ")"


def _cell(x: Any, width: int = 70, table: bool = True) -> str:
    """One line of text for a table cell (``|`` escaped) or a list item, cut to ``width`` characters."""
    s = x if isinstance(x, str) else (_f(_num(x)) if _num(x) is not None else json.dumps(x))
    s = " ".join(str(s).split())
    s = s if len(s) <= width else s[: width - 3] + "..."
    return s.replace("|", "\\|") if table else s


def _seeds_text(a: dict) -> str:
    return ", ".join(f"{s} {MARKS.get(st, st)}" for s, st in zip(a["seeds"], a["statuses"]))


def _trials_text(ts: list[RunTrial]) -> str:
    return ", ".join(f"{t.name} ({t.commit})" for t in ts)


def table_markdown(sweeps: list[StudySweep], unswept: list[str], root: str,
                   carried: dict[str, tuple[list[str], list[str]]] | None = None) -> str:
    lines = [
        f"Generated by `scripts/repro_table.py --write-docs` from the sweeps in `{root}` (do not edit between the "
        f"markers: the next run rewrites it). Each row combines the trials of one commit only (column *commit*); "
        f"trials that ran at another commit are listed below the table and left out. *seeds*: each seed and its "
        f"status (P pass, F fail, nc not comparable); *(hwt)*: the claim holds without training (its reason is in "
        f"the study's page). A claim *holds* when it passes on at least "
        f"{TARGET_SEEDS - 1} of {TARGET_SEEDS} seeds; with fewer seeds the row says so.",
        "",
        "| study | claim | commit | seeds | passes | mean [min - max] | 95% CI of the mean | paper | over the seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows: dict[str, list[str]] = {}  # per study, so that swept and carried-over studies interleave by name
    notes: dict[str, list[str]] = {}
    for sw in sweeps:
        out = rows.setdefault(sw.study, [])
        if not sw.kept:
            out.append(f"| {sw.study} | (no finished trial at {sw.commit or 'any commit'} yet) | {sw.commit or '-'} "
                       f"| | | | | | not run at this commit yet |")
        for label, claims in sw.claims.items():
            for cid, a in claims.items():
                mean, ci = _spread(a)
                n = a["n_runs"] + a.get("n_errors", 0)
                name = f"`{cid}`" + (f" ({label})" if label else "") + (" (hwt)" if cid in sw.held else "")
                out.append(f"| {sw.study} | {name} | {sw.commit} | {_seeds_text(a)} | {a['n_pass']}/{n} | "
                           f"{_cell(mean, 90)} | {_cell(ci, 60)} | {_cell(a['paper_value'], 50)} | "
                           f"{verdict(a, sw.holds_share)} |")
        note = [f"{what}: {which}" for what, which in _left_out(sw)]
        if note:
            notes[sw.study] = [f"- {sw.study}: " + "; ".join(note) + "."]
    carried = carried or {}
    for study, (kept_rows, kept_notes) in carried.items():
        rows[study], notes[study] = kept_rows, kept_notes
    lines += [r for study in sorted(rows) for r in rows[study]]
    notes = [n for study in sorted(notes) for n in notes[study]]
    lines.append("")
    if carried:
        lines += [f"Carried over unchanged from the previous table (their run directories are under none of the roots "
                  f"this run read): {', '.join(sorted(carried))}.", ""]
    if notes:
        lines += ["Trials not in the rows above:", ""] + notes + [""]
    if unswept:
        lines += [f"No sweep yet: {', '.join(unswept)}.", ""]
    return "\n".join(lines)


def _left_out(sw: StudySweep) -> list[tuple[str, str]]:
    """(what, which trials) for the trials a study's rows do not combine."""
    out = []
    if sw.excluded:
        out.append(("left out, another commit", _trials_text(sw.excluded)))
    if sw.pending:
        out.append(("not finished yet", ", ".join(sw.pending)))
    if sw.errors:
        out.append(("failed (counted as not passing)", ", ".join(sw.errors)))
    return out


def study_markdown(sw: StudySweep, root: str) -> str:
    head = f"### Over seeds (lmlab sweep, commit {sw.commit or 'none'})"
    where = f"`{root}/{sw.path.name}`"
    lines = [head, "",
             f"Generated by `scripts/repro_table.py --write-docs` from the sweep in {where} (`--quick`; do not edit "
             f"between the markers). Only trials that ran at commit {sw.commit or '-'} are combined; a claim holds "
             f"at >= {TARGET_SEEDS - 1} of {TARGET_SEEDS} seeds ([the table](../reproducibility.md#the-table)). "
             f"Per claim: its rule as the code states it (the first seed's wording; numbers in it computed from "
             f"the data can differ by seed), each seed's status, passes, mean [min - max] of the measured value, "
             f"and the verdict.", ""]
    if not sw.kept:
        lines += [f"No finished trial at commit {sw.commit or '-'} yet.", ""]
    for label, claims in sw.claims.items():
        if label:
            lines += [f"Grid point {label}:", ""]
        for cid, a in claims.items():
            mean, _ = _spread(a)
            rule = _cell(a["tolerance"], 400, table=False)
            n = a["n_runs"] + a.get("n_errors", 0)
            mean = "no numeric value" if mean == "-" else mean
            held = f" Holds without training: {_cell(sw.held[cid], 200, table=False)}." if cid in sw.held else ""
            lines.append(f"- `{cid}`: rule: {rule}.{held} Seeds {_seeds_text(a)}: {a['n_pass']}/{n} pass, "
                         f"{mean}; {verdict(a, sw.holds_share)}.")
        lines.append("")
    extra = [f"{what[0].upper()}{what[1:]}: {which}." for what, which in _left_out(sw)]
    if extra:
        lines += [" ".join(extra), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def replace_between(text: str, start: str, end: str, body: str) -> str:
    """``text`` with what lies between the two marker lines replaced by ``body``; appended at the end (markers
    included) when the markers are absent."""
    block = f"{start}\n{body.rstrip(chr(10))}\n{end}"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    if j < i:
        raise SystemExit(f"the marker {end} comes before {start}: fix the file by hand")
    return text[:i] + block + text[j + len(end):]


def carried_rows(text: str, studies: set[str]) -> dict[str, tuple[list[str], list[str]]]:
    """The rows (and "Trials not in the rows above" notes) of each study in ``studies`` in the table that ``text``
    (a reproducibility.md) holds now: a study whose run directories are gone keeps its rows rather than losing them.
    Before 2026-12-02 the runs lived only outside the repository; they are archived under ``results/`` since."""
    i, j = text.find(TABLE_START), text.find(TABLE_END)
    out: dict[str, tuple[list[str], list[str]]] = {}
    if i < 0 or j < 0:
        return out
    for line in text[i + len(TABLE_START): j].splitlines():
        if line.startswith("| ") and not line.startswith(("| study |", "|---")):
            study = line[2:].split(" |", 1)[0].strip()
            if study in studies:
                out.setdefault(study, ([], []))[0].append(line)
        elif line.startswith("- ") and ":" in line:
            study = line[2:].split(":", 1)[0].strip()
            if study in studies:
                out.setdefault(study, ([], []))[1].append(line)
    return {k: v for k, v in out.items() if v[0]}


def _commit_for(commit: str | dict | None, study: str) -> str | None:
    if isinstance(commit, dict):
        return commit.get(study, commit.get("*"))
    return commit


def write_docs(root: Path | list[Path], docs: Path, commit: str | dict | None = None, check: bool = False,
               root_label: str | None = None) -> list[Path]:
    """Rewrite the generated parts of ``docs/reproducibility.md`` and ``docs/studies/STUDY.md`` from the sweeps
    under ``root`` (one directory or several). ``commit``: one commit prefix for every study, or a dict of study ->
    prefix with ``"*"`` for the rest. A study that has rows in the table now but no sweep under any root keeps its
    rows (said below the table). Returns the files whose text changed (with ``check``, without writing them)."""
    roots = [root] if isinstance(root, Path) else list(root)
    label = root_label or ", ".join(str(r) for r in roots)
    dirs = [d for r in roots for d in sorted(r.iterdir()) if (d / "sweep.json").is_file()]
    sweeps = [collect(d, _commit_for(commit, json.loads((d / "sweep.json").read_text())["study"])) for d in dirs]
    seen: dict[str, Path] = {}
    for sw in sweeps:
        if sw.study in seen:
            raise SystemExit(f"--root: study {sw.study} has a sweep in both {seen[sw.study]} and {sw.path}; "
                             f"pass only one of them")
        seen[sw.study] = sw.path
    swept = set(seen)
    pages = {p.stem for p in (docs / "studies").glob("*.md")}
    table_path = docs / "reproducibility.md"
    carried = carried_rows(table_path.read_text() if table_path.is_file() else "", pages - swept)
    unswept = sorted(p for p in pages if p not in swept and p not in carried)
    targets = {table_path: (TABLE_START, TABLE_END, table_markdown(sweeps, unswept, label, carried))}
    for sw in sweeps:
        page = docs / "studies" / f"{sw.study}.md"
        if page.is_file():
            targets[page] = (SEEDS_START, SEEDS_END, study_markdown(sw, label))
    changed = []
    for path, (start, end, body) in targets.items():
        old = path.read_text() if path.is_file() else ""
        new = replace_between(old, start, end, body)
        if new != old:
            changed.append(path)
            if not check:
                from lmlab.io import atomic_write_text

                atomic_write_text(path, new)
    return changed


ARCHIVED = ("sweep.json", "sweep-summary.json", "runs/*/summary.json", "runs/*/sweep-trial.json", "errors/*.txt")


def archive(root: Path, dest: Path) -> list[Path]:
    """Copy the small files the table is made from (each sweep's spec and summary, each trial's ``summary.json`` and
    ``sweep-trial.json``, error texts; no checkpoints, no figures) from the sweeps under ``root`` into
    ``dest/<sweep>/``, so that a later session can regenerate the table after the run directories are gone.
    Returns the files written (a file already there with the same bytes is skipped)."""
    import shutil

    written = []
    for d in sorted(x for x in root.iterdir() if (x / "sweep.json").is_file()):
        for pattern in ARCHIVED:
            for f in sorted(d.glob(pattern)):
                target = dest / d.name / f.relative_to(d)
                if target.is_file() and target.read_bytes() == f.read_bytes():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
                written.append(target)
    return written


def parse_commits(values: list[str] | None) -> str | dict | None:
    """``--commit`` values: ``C`` (every study) and ``STUDY=C`` (one study) -> a commit or a study -> commit dict."""
    if not values:
        return None
    out: dict[str, str] = {}
    for v in values:
        study, _, c = v.rpartition("=")
        if not c:
            raise SystemExit(f"--commit {v!r}: give a commit prefix, or STUDY=COMMIT")
        out[study or "*"] = c
    return out["*"] if list(out) == ["*"] else out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", help="sweep directories: print their rows (read from sweep-summary.json)")
    ap.add_argument("--write-docs", action="store_true",
                    help="rewrite the generated sections of docs/reproducibility.md and docs/studies/*.md")
    ap.add_argument("--root", action="append", default=None,
                    help="a directory holding one sweep per study (repeatable; default runs/reproducibility)")
    ap.add_argument("--archive", default=None, metavar="DEST",
                    help="copy the small files of the sweeps under --root into DEST (e.g. results/reproducibility)")
    ap.add_argument("--docs", default="docs", help="the docs directory (default: docs)")
    ap.add_argument("--commit", action="append", default=None,
                    help="report only trials run at this commit (a prefix), or STUDY=COMMIT for one study "
                         "(repeatable); default: each study's most common one")
    ap.add_argument("--check", action="store_true",
                    help="with --write-docs: write nothing, exit 1 if a file would change")
    args = ap.parse_args(argv)
    roots = [Path(r) for r in (args.root or ["runs/reproducibility"])]
    for root in roots:
        if (args.write_docs or args.archive) and not root.is_dir():
            print(f"--root {root}: not a directory; pass the directory holding one sweep per study", file=sys.stderr)
            return 2
    if args.archive:
        n = sum(len(archive(root, Path(args.archive))) for root in roots)
        print(f"archived {n} file(s) into {args.archive}")
        if not args.write_docs:
            return 0
    if args.write_docs:
        label = ", ".join(str(r).rstrip("/") for r in roots)
        changed = write_docs(roots, Path(args.docs), parse_commits(args.commit), args.check, label)
        for p in changed:
            print(("would change: " if args.check else "wrote: ") + str(p))
        if not changed:
            print("docs up to date")
        return 1 if (args.check and changed) else 0
    print("| study | claim | passes | seeds: status | mean [min - max] | per seed | paper | over seeds |")
    print("|---|---|---|---|---|---|---|---|")
    for d in args.dirs:
        if (Path(d) / "sweep-summary.json").is_file():
            print("\n".join(rows(Path(d))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
