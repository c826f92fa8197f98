"""Turn run directories into one self-contained HTML page: claims vs measured, then the figures.

Figures are embedded as base64 PNGs so the page can be mailed or archived on its own.
A run directory whose ``summary.json`` cannot be read is listed with the reason, not skipped silently.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

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
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value))
    return html.escape(str(value))


def _load(summary_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(summary_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{summary_path} is not valid JSON (line {e.lineno}): rerun the study") from None
    for key in ("study", "claims"):
        if key not in data:
            raise ValueError(f"{summary_path} has no '{key}' field: it was not written by an lmlab study")
    return data


def build_report(runs_dir: str | Path, out: str | Path) -> tuple[Path, int]:
    runs_dir, out = Path(runs_dir), Path(out)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs directory {runs_dir} does not exist; run a study first (lmlab run two-hop --quick)")
    paths = sorted(runs_dir.rglob("summary.json"))
    if not paths:
        raise FileNotFoundError(f"no summary.json under {runs_dir}; run a study first (lmlab run two-hop --quick)")

    overview, sections = [], []
    for p in paths:
        run = p.parent
        name = html.escape(str(run.relative_to(runs_dir)))
        try:
            s = _load(p)
        except ValueError as e:
            overview.append(f"<tr><td>{name}</td><td colspan=8>unreadable: {html.escape(str(e))}</td></tr>")
            continue
        for c in s["claims"]:
            color = STATUS_COLORS.get(c["status"], "#6e7781")
            overview.append(
                f"<tr><td><a href='#{name}'>{name}</a></td><td>{html.escape(s['study'])}</td>"
                f"<td>{html.escape(c['id'])}</td><td>{html.escape(c['claim'])}</td>"
                f"<td>{_fmt(c['paper_value'])} <small>{html.escape(c.get('source', ''))}</small></td>"
                f"<td>{_fmt(c['measured'])}</td><td>{html.escape(c['tolerance'])}</td>"
                f"<td><span class='status' style='background:{color}'>{c['status']}</span></td>"
                f"<td>{s.get('seed')}</td></tr>"
            )
        figs = []
        for fig in s.get("figures", []):
            fp = run / fig
            if fp.exists():
                b64 = base64.b64encode(fp.read_bytes()).decode()
                figs.append(f"<figure><img src='data:image/png;base64,{b64}' alt='{html.escape(fig)}'>"
                            f"<figcaption>{html.escape(fig)}</figcaption></figure>")
            else:
                figs.append(f"<p>missing figure: {html.escape(fig)}</p>")
        prov = s.get("provenance", {})
        sections.append(
            f"<h2 id='{name}'>{name} <small>({html.escape(s['study'])}, seed {s.get('seed')}, "
            f"{'quick' if s.get('quick') else 'full'}, {s.get('seconds', 0):.0f} s)</small></h2>"
            f"<p>task {html.escape(str(s.get('task_version')))} · lmlab {html.escape(str(prov.get('lmlab')))} · "
            f"commit {html.escape(str(prov.get('git_commit'))[:10])} · torch {html.escape(str(prov.get('torch')))}</p>"
            + "".join(figs)
            + f"<details><summary>metrics</summary><pre>{html.escape(json.dumps(s.get('metrics', {}), indent=1)[:20000])}</pre></details>"
            + f"<details><summary>config</summary><pre>{html.escape(json.dumps(s.get('config', {}), indent=1))}</pre></details>"
        )

    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>lmlab report</title>"
        f"<style>{CSS}</style></head><body><h1>lmlab: claims vs measured</h1>"
        f"<p>{len(paths)} run(s) under <code>{html.escape(str(runs_dir))}</code>. Status is decided by the tolerance "
        "shown, written in the study's code; <em>not_comparable</em> means our configuration differs from the one the "
        "paper's number refers to.</p>"
        "<table><tr><th>run</th><th>study</th><th>claim id</th><th>claim</th><th>paper</th><th>ours</th>"
        "<th>tolerance</th><th>status</th><th>seed</th></tr>" + "".join(overview) + "</table>"
        + "".join(sections) + "</body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out, len(paths)
