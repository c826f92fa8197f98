"""Turn run directories into one self-contained HTML page: claims vs measured, then the figures.

Rendered with jinja2 with autoescaping on: every value from a ``summary.json`` (study names, claims, status,
seed, paths) is escaped, so a run directory cannot inject markup into the page. Figures are embedded as
base64 PNGs so the page can be mailed or archived on its own. A run directory whose ``summary.json`` cannot
be read is listed with the reason, not skipped silently.

A sweep directory (``sweep-summary.json``, from ``lmlab sweep``) gets one section: per grid point and
claim the pass rate across seeds, the measured mean and CI, the paper's value and whether it holds,
a figure of the measured value per seed against the paper's, and a heat map of pass rates over the grid;
its trials' run directories are summarised there, not listed one by one.

Claims marked ``holds_without_training`` (they pass with learning switched off: a property of the data or
the metric) are listed apart, with their reason. A ``--control`` run is shown beside the real run of the same
study, seed and size: each claim's status under the control sits next to the real one, and the per-run table
gives each run's pass / fail / not comparable / holds-without-training counts beside its control's.

Each run's ``stages`` (from ``summary.json``: per stage, computed now or reused from disk, the fingerprint of the
code, config and data that made it, and why) are listed in its section, so a result reused from an earlier run
is visible as such.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from lmlab.io import atomic_write_text

STATUS_COLORS = {"pass": "#1a7f37", "fail": "#cf222e", "not_comparable": "#6e7781"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#1f2328}
table{border-collapse:collapse;width:100%;margin:1em 0;font-size:14px}
th,td{border:1px solid #d0d7de;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
.status{font-weight:600;color:white;padding:2px 6px;border-radius:4px;white-space:nowrap}
code,pre{font-size:12px;background:#f6f8fa}
img{max-width:100%;border:1px solid #d0d7de;margin:.5em 0}
details{margin:.5em 0}
"""


def _fmt(value: Any) -> str:
    """Plain text of a value (jinja2 escapes it)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _leaves_html(a: dict[str, Any], n: int = 6) -> str:
    """A dict-valued claim's per-number means over the seeds (``measured_leaves``), first ``n`` of them."""
    leaves = a.get("measured_leaves") or {}
    if not leaves:
        return ""
    items = []
    for k, v in list(leaves.items())[:n]:
        ci = v.get("ci95")
        items.append(f"{html.escape(k)}: {v['mean']:.4g}" + (f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""))
    more = f"<br>(+{len(leaves) - n} more in sweep-summary.json)" if len(leaves) > n else ""
    return "<br><small>" + "<br>".join(items) + more + "</small>"


def _efmt(value: Any) -> str:
    """Escaped text of a value, for the sweep sections built as HTML strings."""
    return html.escape(_fmt(value))


def _load(summary_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(summary_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{summary_path} is not valid JSON (line {e.lineno}): rerun the study") from None
    for key in ("study", "claims"):
        if key not in data:
            raise ValueError(f"{summary_path} has no '{key}' field: it was not written by an lmlab study")
    return data


TEMPLATE = """<!doctype html><html><head><meta charset='utf-8'><title>lmlab report</title>
<style>{{ css }}</style></head><body><h1>lmlab: claims vs measured</h1>
<p>{{ n_runs }} run(s) and {{ sweeps|length }} sweep(s) under <code>{{ runs_dir }}</code>. Status is decided by the tolerance shown, written in the
study's code; <em>not_comparable</em> means our configuration differs from the one the paper's number refers to.
<em>control</em> is the status of the same claim in the <code>--control</code> run (learning switched off), where
there is one: a claim that passes there too is not evidence of learning.</p>
{% macro status(s) %}{% if s %}<span class='status' style='background:{{ colors.get(s, "#6e7781") }}'>{{ s }}</span>{% endif %}{% endmacro %}
{% macro counts(n) %}{{ n.pass }} pass · {{ n.fail }} fail · {{ n.not_comparable }} not comparable · {{ n.held }} hold without training{% endmacro %}
<h2>Per run</h2><p>Claim counts of each run; <em>hold without training</em> counts the claims marked so (also counted in
their status). <em>stages</em>: the parts of the run (a trained model, a cache) computed now or reused from disk.</p>
<table><tr><th>run</th><th>study</th><th>seed</th><th>size</th><th>claims</th><th>control run</th><th>stages</th></tr>
{% for r in runs if not r.error and not r.control_of %}<tr><td><a href='#{{ r.anchor }}'>{{ r.name }}</a></td><td>{{ r.study }}</td>
<td>{{ r.seed }}</td><td>{{ "quick" if r.quick else "full" }}{% if r.control %}, control{% endif %}</td><td>{{ counts(r.counts) }}</td>
<td>{% if r.control_run %}<a href='#{{ r.control_run.anchor }}'>{{ r.control_run.name }}</a>: {{ counts(r.control_run.counts) }}{% else %}none{% endif %}</td>
<td>{% if r.stages %}{{ r.stages|selectattr("state", "eq", "computed now")|list|length }} computed now, {{ r.stages|selectattr("state", "eq", "reused")|list|length }} reused{% else %}not recorded{% endif %}</td></tr>
{% endfor %}</table>
<table><tr><th>run</th><th>study</th><th>claim id</th><th>claim</th><th>paper</th><th>ours</th><th>tolerance</th>
<th>status</th><th>control</th><th>seed</th></tr>
{% for r in runs %}{% if r.error %}<tr><td>{{ r.name }}</td><td colspan=9>unreadable: {{ r.error }}</td></tr>
{% else %}{% for c in r.claims if not c.holds_without_training %}<tr><td><a href='#{{ r.anchor }}'>{{ r.name }}</a></td>
<td>{{ r.study }}</td><td>{{ c.id }}</td><td>{{ c.claim }}</td><td>{{ fmt(c.paper_value) }} <small>{{ c.source }}</small></td>
<td>{{ fmt(c.measured) }}</td><td>{{ c.tolerance }}</td><td>{{ status(c.status) }}</td>
<td>{{ status(r.control_status.get(c.id)) }}</td><td>{{ r.seed }}</td></tr>
{% endfor %}{% endif %}{% endfor %}</table>
{% if held %}<h2>Claims that hold without training</h2><p>These pass with learning switched off (a property of the
data or the metric), so they are not evidence that the model learned anything.</p>
<table><tr><th>run</th><th>claim id</th><th>claim</th><th>ours</th><th>status</th><th>why it holds anyway</th></tr>
{% for r, c in held %}<tr><td><a href='#{{ r.anchor }}'>{{ r.name }}</a></td><td>{{ c.id }}</td><td>{{ c.claim }}</td>
<td>{{ fmt(c.measured) }}</td><td>{{ status(c.status) }}</td><td>{{ c.holds_reason }}</td></tr>
{% endfor %}</table>{% endif %}
{% for s in sweeps %}{{ s }}{% endfor %}
{% for r in runs if not r.error %}<h2 id='{{ r.anchor }}'>{{ r.name }} <small>({{ r.study }}, seed {{ r.seed }},
{{ "quick" if r.quick else "full" }}{% if r.control %}, control{% endif %}, {{ "%.0f"|format(r.seconds) }} s)</small></h2>
{% if r.control_of %}<p>control run of <a href='#{{ r.control_of.anchor }}'>{{ r.control_of.name }}</a></p>{% endif %}
{% if r.control_run %}<p>its control run: <a href='#{{ r.control_run.anchor }}'>{{ r.control_run.name }}</a></p>{% endif %}
<p>task {{ r.task_version }} · lmlab {{ r.prov.lmlab }} · commit {{ (r.prov.git_commit|string)[:10] }}{% if r.prov.git_dirty %} (uncommitted changes){% endif %}{% if r.git_at_end %} <strong class='moved'>(the code changed while it ran; at the end: {{ r.git_at_end }})</strong>{% endif %} · torch {{ r.prov.torch }}</p>
<p>claims: {{ counts(r.counts) }}</p>
{% if r.stages %}<table><tr><th>stage</th><th>this run</th><th>fingerprint</th><th>why</th></tr>
{% for st in r.stages %}<tr><td>{{ st.name }}</td><td>{{ st.state }}</td><td><code>{{ st.fingerprint }}</code></td><td>{{ st.reason }}</td></tr>{% endfor %}</table>
{% else %}<p>stages: not recorded (this study or an older run does not write them)</p>{% endif %}
{% for f in r.figures %}{% if f.b64 %}<figure><img src='data:image/png;base64,{{ f.b64 }}' alt='{{ f.name }}'>
<figcaption>{{ f.name }}</figcaption></figure>{% else %}<p>missing figure: {{ f.name }}</p>{% endif %}{% endfor %}
<details><summary>metrics</summary><pre>{{ r.metrics }}</pre></details>
<details><summary>config</summary><pre>{{ r.config }}</pre></details>
{% endfor %}</body></html>
"""


def _stages(stages: Any) -> list[dict[str, Any]]:
    """summary.json's ``stages`` ({name: {computed, fingerprint, reason}}) as rows; a malformed entry is shown
    as such rather than breaking the page."""
    if not isinstance(stages, dict):
        return []
    rows = []
    for name, st in stages.items():
        st = st if isinstance(st, dict) else {"reason": f"unreadable stage record: {st!r}"}
        computed = st.get("computed")
        state = "computed now" if computed is True else "reused" if computed is False else "unknown"
        rows.append({"name": str(name), "state": state,
                     "fingerprint": str(st.get("fingerprint") or "-")[:16], "reason": str(st.get("reason") or "")})
    return rows


def _run(runs_dir: Path, p: Path) -> dict[str, Any]:
    run = p.parent
    name = str(run.relative_to(runs_dir))
    try:
        s = _load(p)
    except ValueError as e:
        return {"name": name, "anchor": name, "error": str(e)}
    figs = []
    for fig in s.get("figures", []):
        fp = run / str(fig)
        ok = fp.is_file() and fp.resolve().is_relative_to(run.resolve())  # a figure is a file of this run
        figs.append({"name": str(fig), "b64": base64.b64encode(fp.read_bytes()).decode() if ok else ""})
    claims = s["claims"]
    prov = s.get("provenance", {}) or {}
    if not isinstance(prov, dict):
        prov = {}
    counts = {k: sum(c.get("status") == k for c in claims) for k in ("pass", "fail", "not_comparable")}
    counts["held"] = sum(bool(c.get("holds_without_training")) for c in claims)
    return {"name": name, "anchor": name, "error": "", "study": str(s["study"]), "claims": claims,
            "counts": counts, "stages": _stages(s.get("stages")),
            "seed": s.get("seed"), "quick": bool(s.get("quick")), "control": bool(s.get("control")),
            "seconds": float(s.get("seconds") or 0), "task_version": s.get("task_version"),
            "prov": prov, "git_at_end": _git_at_end(prov.get("git_at_end")), "figures": figs, "control_status": {},
            "metrics": json.dumps(s.get("metrics", {}), indent=1)[:20000],
            "config": json.dumps(s.get("config", {}), indent=1)}


def _git_at_end(moved: Any) -> str:
    """``provenance.git_at_end`` (what differed from the start when the run ended) in words, "" when absent."""
    if not moved:
        return ""
    if not isinstance(moved, dict):
        return str(moved)
    words = []
    if "git_commit" in moved:
        words.append(f"commit {str(moved['git_commit'])[:10]}")
    if "git_dirty" in moved:
        words.append("uncommitted changes" if moved["git_dirty"] else "no uncommitted changes")
    words += [f"{k} {v}" for k, v in moved.items() if k not in ("git_commit", "git_dirty")]
    return ", ".join(words)


def build_report(runs_dir: str | Path, out: str | Path) -> tuple[Path, int]:
    import jinja2

    runs_dir, out = Path(runs_dir), Path(out)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs directory {runs_dir} does not exist; run a study first (lmlab run two-hop --quick)")
    sweeps = sorted(p.parent for p in runs_dir.rglob("sweep-summary.json"))
    # a sweep's trials are summarised in its own section, not listed one by one
    paths = sorted(p for p in runs_dir.rglob("summary.json") if not any(d in p.parents for d in sweeps))
    if not paths and not sweeps:
        raise FileNotFoundError(f"no summary.json under {runs_dir}; run a study first (lmlab run two-hop --quick)")
    runs = [_run(runs_dir, p) for p in paths]
    # a control run sits beside the real run of the same study, seed and size
    real = {(r["study"], r["seed"], r["quick"]): r for r in runs if not r["error"] and not r["control"]}
    for r in runs:
        if not r["error"] and r["control"]:
            twin = real.get((r["study"], r["seed"], r["quick"]))
            if twin is not None:
                twin["control_status"] = {c["id"]: c["status"] for c in r["claims"]}
                twin["control_run"], r["control_of"] = r, twin
    held = [(r, c) for r in runs if not r["error"] for c in r["claims"] if c.get("holds_without_training")]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    # sweep sections are built as HTML with every value escaped (html.escape), so they are passed as markup
    sweep_html = [jinja2.utils.markupsafe.Markup(sweep_section(d, runs_dir)) for d in sweeps]
    page = env.from_string(TEMPLATE).render(css=CSS, runs=runs, held=held, n_runs=len(paths), runs_dir=str(runs_dir),
                                            colors=STATUS_COLORS, fmt=_fmt, sweeps=sweep_html)
    atomic_write_text(out, page)
    return out, len(paths) + len(sweeps)


# -- sweeps ------------------------------------------------------------------------------------------------
def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v and abs(v) != float("inf") else None


def _img(path: Path) -> str:
    b64 = base64.b64encode(path.read_bytes()).decode()
    return f"<figure><img src='data:image/png;base64,{b64}' alt='{html.escape(path.name)}'><figcaption>{html.escape(path.name)}</figcaption></figure>"


def _plot_leaf(leaves: dict[str, dict]) -> str | None:
    """The leaf of a dict-valued measurement that the sweep figure plots: the first whose min and max differ."""
    for k, v in leaves.items():
        if v.get("min") is not None and v.get("max") is not None and v["max"] != v["min"]:
            return k
    return next(iter(leaves), None)


def sweep_figures(summary: dict[str, Any], out_dir: str | Path) -> list[str]:
    """Write ``sweep-claims.png`` (measured value per seed against the paper's, one panel per claim) and,
    for a grid, ``sweep-grid.png`` (pass rate per grid point, one heat map per claim); returns the names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from lmlab.claims import numeric_leaves

    out_dir = Path(out_dir)
    points = summary.get("points", [])
    claim_ids = list(dict.fromkeys(cid for p in points for cid in p["claims"]))
    if not claim_ids:
        return []
    names = []
    ncol = min(3, len(claim_ids))
    nrow = -(-len(claim_ids) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    for ax, cid in zip(axes.flat, claim_ids):
        paper, ylabel = None, "measured"
        for i, p in enumerate(points):
            a = p["claims"].get(cid)
            if not a:
                continue
            paper = _num(a["paper_value"]) if paper is None else paper
            label = " ".join(f"{k}={v}" for k, v in p["grid"].items()) or "all"
            # a dict-valued measurement is plotted by its first numeric leaf that varies over the seeds (a leaf that is
            # the same on every seed, e.g. a configured bound, says nothing); the first leaf when none varies
            leaf = _plot_leaf(a.get("measured_leaves") or {})
            vals = [_num(m) if leaf is None else numeric_leaves(m).get(leaf) if isinstance(m, dict) else None
                    for m in a["measured"]]
            xs = [s for s, v in zip(a["seeds"], vals) if v is not None]
            ys = [v for v in vals if v is not None]
            ok = [st == "pass" for st, v in zip(a["statuses"], vals) if v is not None]
            color = f"C{i % 10}"
            ax.scatter([x for x, o in zip(xs, ok) if o], [y for y, o in zip(ys, ok) if o], color=color, label=label)
            ax.scatter([x for x, o in zip(xs, ok) if not o], [y for y, o in zip(ys, ok) if not o],
                       facecolors="none", edgecolors=color)
            ci = a.get("measured_ci95") if leaf is None else a["measured_leaves"][leaf].get("ci95")
            if leaf is not None:
                ylabel = leaf
                paper = None  # the paper's value is a whole-claim description, not this leaf's number
            if ci:
                lo, hi = ci
                ax.axhspan(lo, hi, color=color, alpha=0.12)
        if paper is not None:
            ax.axhline(paper, color="k", ls="--", lw=1, label="paper")
        ax.set(title=cid, xlabel="seed", ylabel=ylabel)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(claim_ids):]:
        ax.axis("off")
    fig.suptitle("measured per seed (filled: pass, hollow: fail; band: 95% CI of the mean)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "sweep-claims.png", dpi=100)
    plt.close(fig)
    names.append("sweep-claims.png")

    keys = list(summary.get("grid", {}))
    if keys and len(keys) <= 2:
        xs_vals = summary["grid"][keys[0]]
        ys_vals = summary["grid"][keys[1]] if len(keys) == 2 else [None]
        fig, axes = plt.subplots(1, len(claim_ids), figsize=(3.6 * len(claim_ids) + 0.8, 0.9 * len(ys_vals) + 2.2),
                                 squeeze=False)
        for ax, cid in zip(axes.flat, claim_ids):
            grid = [[float("nan")] * len(xs_vals) for _ in ys_vals]
            for p in points:
                a = p["claims"].get(cid)
                if a and a["pass_rate"] is not None:
                    xi = xs_vals.index(p["grid"][keys[0]])
                    yi = ys_vals.index(p["grid"][keys[1]]) if len(keys) == 2 else 0
                    grid[yi][xi] = a["pass_rate"]
            im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
            for yi, row in enumerate(grid):
                for xi, v in enumerate(row):
                    ax.text(xi, yi, "-" if v != v else f"{v:.0%}", ha="center", va="center", fontsize=8)
            ax.set_xticks(range(len(xs_vals)), [str(v) for v in xs_vals], fontsize=7)
            ax.set_yticks(range(len(ys_vals)), [str(v) for v in ys_vals] if len(keys) == 2 else [""], fontsize=7)
            ax.set(title=cid, xlabel=keys[0], ylabel=keys[1] if len(keys) == 2 else "")
        fig.colorbar(im, ax=list(axes.flat), label="pass rate over seeds", shrink=0.8)
        fig.savefig(out_dir / "sweep-grid.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        names.append("sweep-grid.png")
    return names


def sweep_section(sweep_dir: str | Path, runs_dir: str | Path | None = None) -> str:
    """One HTML section for a sweep directory (see the module docstring); draws its figures if missing."""
    sweep_dir = Path(sweep_dir)
    rel = str(sweep_dir.relative_to(runs_dir)) if runs_dir else "."
    name = html.escape(sweep_dir.resolve().name if rel == "." else rel)
    try:
        s = json.loads((sweep_dir / "sweep-summary.json").read_text())
    except (json.JSONDecodeError, OSError) as e:
        return f"<h2 id='{name}'>sweep {name}</h2><p>unreadable sweep-summary.json: {html.escape(str(e))}</p>"
    figs = [f for f in ("sweep-claims.png", "sweep-grid.png") if (sweep_dir / f).exists()]
    if not figs:
        figs = sweep_figures(s, sweep_dir)
    share = s.get("holds_share", 0.8)
    spec = s.get("spec", {})
    rows = []
    for p in s.get("points", []):
        label = html.escape(" ".join(f"{k}={v}" for k, v in p["grid"].items()) or "-")
        for cid, a in p["claims"].items():
            n = a["n_runs"] + a.get("n_errors", 0)
            rate = "-" if a["pass_rate"] is None else f"{a['pass_rate']:.0%}"
            ci = a.get("measured_ci95")
            holds = "holds" if a["holds"] else "does not hold"
            color = STATUS_COLORS["pass" if a["holds"] else "fail"]
            rows.append(
                f"<tr><td>{label}</td><td>{html.escape(cid)}</td><td>{html.escape(a['claim'])}</td>"
                f"<td>{a['n_pass']}/{n} ({rate})</td><td>{_efmt(a['measured_mean'])}{_leaves_html(a)}</td>"
                f"<td>{'-' if not ci else f'[{ci[0]:.4g}, {ci[1]:.4g}]'}</td><td>{_efmt(a['paper_value'])}</td>"
                f"<td>{html.escape(a['tolerance'])}</td>"
                f"<td><span class='status' style='background:{color}'>{holds}</span></td></tr>")
        for e in p.get("errors", []):
            rows.append(f"<tr><td>{label}</td><td colspan=8>trial {html.escape(e['trial'])} (seed {e['seed']}) failed: "
                        f"{html.escape(e['error'])}</td></tr>")
    return (
        f"<h2 id='{name}'>sweep {name} <small>({html.escape(str(s.get('study')))}, seeds {_efmt(spec.get('seeds'))}, "
        f"{'quick' if spec.get('quick') else 'full'}{', control' if spec.get('control') else ''})</small></h2>"
        f"<p>{s.get('n_done', 0)} of {s.get('n_trials', 0)} trials done, {s.get('n_errors', 0)} failed, "
        f"{s.get('n_pending', 0)} pending. A claim <b>holds</b> when it passes on at least {share:.0%} of the seeds of "
        "its grid point; a trial that failed counts as not passing, a not-comparable one is left out. "
        "CI: 95% bootstrap interval of the mean measured value.</p>"
        "<table><tr><th>grid point</th><th>claim id</th><th>claim</th><th>passes</th><th>mean</th><th>95% CI</th>"
        "<th>paper</th><th>rule (per seed)</th><th>across seeds</th></tr>" + "".join(rows) + "</table>"
        + "".join(_img(sweep_dir / f) for f in figs if (sweep_dir / f).exists())
    )
