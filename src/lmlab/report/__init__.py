"""Turn run directories into one self-contained HTML page: claims vs measured, then the figures.

Rendered with jinja2 with autoescaping on: every value from a ``summary.json`` (study names, claims, status,
seed, paths) is escaped, so a run directory cannot inject markup into the page. Figures are embedded as
base64 PNGs so the page can be mailed or archived on its own. A run directory whose ``summary.json`` cannot
be read is listed with the reason, not skipped silently.

Claims marked ``holds_without_training`` (they pass with learning switched off: a property of the data or
the metric) are listed apart, with their reason. A ``--control`` run is shown beside the real run of the same
study, seed and size: each claim's status under the control sits next to the real one.
"""

from __future__ import annotations

import base64
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
<p>{{ n_runs }} run(s) under <code>{{ runs_dir }}</code>. Status is decided by the tolerance shown, written in the
study's code; <em>not_comparable</em> means our configuration differs from the one the paper's number refers to.
<em>control</em> is the status of the same claim in the <code>--control</code> run (learning switched off), where
there is one: a claim that passes there too is not evidence of learning.</p>
{% macro status(s) %}{% if s %}<span class='status' style='background:{{ colors.get(s, "#6e7781") }}'>{{ s }}</span>{% endif %}{% endmacro %}
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
{% for r in runs if not r.error %}<h2 id='{{ r.anchor }}'>{{ r.name }} <small>({{ r.study }}, seed {{ r.seed }},
{{ "quick" if r.quick else "full" }}{% if r.control %}, control{% endif %}, {{ "%.0f"|format(r.seconds) }} s)</small></h2>
{% if r.control_of %}<p>control run of <a href='#{{ r.control_of.anchor }}'>{{ r.control_of.name }}</a></p>{% endif %}
{% if r.control_run %}<p>its control run: <a href='#{{ r.control_run.anchor }}'>{{ r.control_run.name }}</a></p>{% endif %}
<p>task {{ r.task_version }} · lmlab {{ r.prov.lmlab }} · commit {{ (r.prov.git_commit|string)[:10] }} · torch {{ r.prov.torch }}</p>
{% for f in r.figures %}{% if f.b64 %}<figure><img src='data:image/png;base64,{{ f.b64 }}' alt='{{ f.name }}'>
<figcaption>{{ f.name }}</figcaption></figure>{% else %}<p>missing figure: {{ f.name }}</p>{% endif %}{% endfor %}
<details><summary>metrics</summary><pre>{{ r.metrics }}</pre></details>
<details><summary>config</summary><pre>{{ r.config }}</pre></details>
{% endfor %}</body></html>
"""


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
    return {"name": name, "anchor": name, "error": "", "study": str(s["study"]), "claims": s["claims"],
            "seed": s.get("seed"), "quick": bool(s.get("quick")), "control": bool(s.get("control")),
            "seconds": float(s.get("seconds") or 0), "task_version": s.get("task_version"),
            "prov": s.get("provenance", {}) or {}, "figures": figs, "control_status": {},
            "metrics": json.dumps(s.get("metrics", {}), indent=1)[:20000],
            "config": json.dumps(s.get("config", {}), indent=1)}


def build_report(runs_dir: str | Path, out: str | Path) -> tuple[Path, int]:
    import jinja2

    runs_dir, out = Path(runs_dir), Path(out)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs directory {runs_dir} does not exist; run a study first (lmlab run two-hop --quick)")
    paths = sorted(runs_dir.rglob("summary.json"))
    if not paths:
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
    page = env.from_string(TEMPLATE).render(css=CSS, runs=runs, held=held, n_runs=len(paths), runs_dir=str(runs_dir),
                                            colors=STATUS_COLORS, fmt=_fmt)
    atomic_write_text(out, page)
    return out, len(paths)
