"""The page of a sweep: each key of the space against the metric (intervals drawn), and the trials table.

A static page (inline SVG, no script): it opens anywhere and can be attached to a note.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any, Sequence

from mlcls.utils.fileio import atomic_open

W, H, PAD = 440, 260, 46  # one plot's size and margin (px)


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def _y_range(rows: list[dict], metric: str) -> tuple[float, float]:
    values = [v for r in rows for v in (r[metric], r["low"], r["high"], r["last_epoch_value"]) if isinstance(v, (int, float))]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    span = (hi - lo) or max(abs(hi), 1.0) * 0.1
    return lo - 0.08 * span, hi + 0.08 * span


def _x_positions(rows: list[dict], key: str, log: bool) -> tuple[dict, list[tuple[float, str]]]:
    """Each row's x (px) and the axis ticks: choices evenly spaced, numbers on their (log) scale."""
    values = [r.get(key) for r in rows]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)
    span = W - 2 * PAD
    if not numeric or len({v for v in values if v is not None}) < 2:
        cats = list(dict.fromkeys(_fmt(v) for v in values if v is not None))
        place = {c: PAD + span * (i + 0.5) / len(cats) for i, c in enumerate(cats)}
        return {i: place[_fmt(v)] for i, v in enumerate(values) if v is not None}, [(place[c], c) for c in cats]
    f = math.log10 if log and min(v for v in values if v is not None) > 0 else float
    lo, hi = f(min(v for v in values if v is not None)), f(max(v for v in values if v is not None))
    x = {i: PAD + span * (0.05 + 0.9 * (f(v) - lo) / (hi - lo)) for i, v in enumerate(values) if v is not None}
    ticks = sorted({(x[i], _fmt(v)) for i, v in enumerate(values) if v is not None})
    return x, ticks


def plot(rows: list[dict], key: str, metric: str, best: int | None, log: bool = False) -> str:
    """One SVG: ``key`` against ``metric``; finished trials filled (the best in orange) with their
    interval, pruned trials hollow at their last reported value."""
    y0, y1 = _y_range(rows, metric)
    y = lambda v: H - PAD - (H - 2 * PAD) * (v - y0) / (y1 - y0)  # noqa: E731
    x, ticks = _x_positions(rows, key, log)
    out = [f'<svg class="plot" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{_esc(key)} vs {_esc(metric)}">',
           f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" class="axis"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" class="axis"/>']  # fmt: skip
    for k in range(5):
        v = y0 + (y1 - y0) * k / 4
        out.append(f'<text x="{PAD - 4}" y="{y(v) + 4:.1f}" class="tick" text-anchor="end">{v:.3g}</text>')
    for px, label in ticks[:12]:
        short = label if len(label) <= 18 else label[:16] + "…"
        out.append(
            f'<text x="{px:.1f}" y="{H - PAD + 14}" class="tick" text-anchor="middle"><title>{_esc(label)}</title>{_esc(short)}</text>'
        )
    out.append(f'<text x="{W / 2}" y="{H - 8}" class="label" text-anchor="middle">{_esc(key)}</text>')
    out.append(f'<text x="12" y="{H / 2}" class="label" text-anchor="middle" transform="rotate(-90 12 {H / 2})">{_esc(metric)}</text>')
    for i, r in enumerate(rows):
        if i not in x:
            continue
        tip = f"trial {r['trial']}: {r['state']}"
        if r["state"] == "COMPLETE" and isinstance(r[metric], (int, float)):
            if isinstance(r["low"], (int, float)) and isinstance(r["high"], (int, float)):
                out.append(f'<line x1="{x[i]:.1f}" y1="{y(r["low"]):.1f}" x2="{x[i]:.1f}" y2="{y(r["high"]):.1f}" class="ci"/>')
            cls = "best" if r["trial"] == best else "done"
            out.append(f'<circle cx="{x[i]:.1f}" cy="{y(r[metric]):.1f}" r="{6 if cls == "best" else 4}" class="{cls}">'
                       f"<title>{_esc(tip)}, {metric} {r[metric]:.4g}</title></circle>")  # fmt: skip
        elif r["state"] == "PRUNED" and isinstance(r["last_epoch_value"], (int, float)):
            out.append(
                f'<circle cx="{x[i]:.1f}" cy="{y(r["last_epoch_value"]):.1f}" r="4" class="pruned"><title>{_esc(tip)}</title></circle>'
            )
    return "\n".join([*out, "</svg>"])


CSS = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #ddd;background:#fff}
.axis{stroke:#888}.tick{font-size:10px;fill:#555}.label{font-size:12px;fill:#222}
.ci{stroke:#3b6fb6;stroke-width:2}.done{fill:#3b6fb6}.best{fill:#e07b00;stroke:#222}.pruned{fill:none;stroke:#999;stroke-width:1.5}
table{border-collapse:collapse;margin-top:16px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
tr.best td{background:#fff3e0}td.num{text-align:right}.err{color:#a00;max-width:420px}"""


def write_sweep_page(rows: list[dict], keys: Sequence[str], log_keys: Sequence[str], metric: str, direction: str,
                     out: str | os.PathLike, title: str) -> Path:  # fmt: skip
    """Write the page of ``rows`` (:func:`mlcls.apis.sweep.trials_table`) to ``out`` (atomically)."""
    done = [r for r in rows if r["state"] == "COMPLETE" and isinstance(r[metric], (int, float))]
    best = (max if direction == "maximize" else min)(done, key=lambda r: r[metric])["trial"] if done else None
    counts = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    head = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{_esc(title)}</h1>", f"<p>{_esc(metric)} ({_esc(direction)}); trials: {_esc(head) or 'none yet'}"
             + (f"; best: trial {best}, {metric} {_fmt(next(r[metric] for r in done if r['trial'] == best))}" if best is not None else "")
             + (". Bars: the bootstrap interval of the pooled out-of-fold metric" if any(r["low"] is not None for r in rows) else "")
             + (". Hollow: pruned (its last reported value)" if counts["PRUNED"] else "") + ".</p>",
             '<div class="plots">', *(plot(rows, k, metric, best, log=k in log_keys) for k in keys), "</div>"]  # fmt: skip
    cols = ["trial", "state", *keys, metric, "interval", "seconds", "error"]
    parts.append("<table><thead><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in cols) + "</tr></thead><tbody>")
    for r in rows:
        interval = f"[{_fmt(r['low'])}, {_fmt(r['high'])}]" if r["low"] is not None else ""
        cells = [r["trial"], r["state"], *(r.get(k) for k in keys), _fmt(r[metric]), interval, _fmt(r["seconds"]), r["error"]]
        parts.append(f'<tr class="{"best" if r["trial"] == best else ""}">' + "".join(
            f'<td class="{"err" if i == len(cells) - 1 else ""}">{_esc(_fmt(c))}</td>' for i, c in enumerate(cells)) + "</tr>")  # fmt: skip
    parts.append("</tbody></table></body></html>")
    out = Path(out)
    with atomic_open(out) as f:
        f.write("\n".join(parts))
    return out
