"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, nothing fetched), verdict at the
top, then per target: checks, per-position top-1 agreement and KL per parity stage, size by dtype, measured vs
predicted latency."""

from __future__ import annotations

from html import escape
from importlib import resources

from edgeslm.records import FleetReport, FleetRow, Report, Status, TargetReport
from edgeslm.reports.collect import latency_rows

COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04"]


def line_chart(series: list[tuple[str, list[float]]], title: str, y_label: str, y_max: float | None = None,
               width: int = 520, height: int = 200) -> str:
    """An SVG line chart of per-position values, one line per series."""
    pad_l, pad_b, pad_t, pad_r = 48, 28, 24, 12
    pts = [v for _, vals in series for v in vals if v is not None]  # None: no value there (e.g. no decisive position)
    top = y_max if y_max is not None else max(pts + [1e-9]) * 1.1
    n = max((len(v) for _, v in series), default=1)
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def xy(i, v):
        return pad_l + (i / max(n - 1, 1)) * w, pad_t + h - min(v / top, 1.0) * h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(title)}">',
           f'<text x="{pad_l}" y="15" font-size="12" font-weight="bold">{escape(title)}</text>',
           f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#999"/>',
           f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#999"/>',
           f'<text x="4" y="{pad_t + 10}" font-size="10">{top:.3g}</text>',
           f'<text x="4" y="{pad_t + h}" font-size="10">0</text>',
           f'<text x="{pad_l + w / 2}" y="{height - 6}" font-size="10" text-anchor="middle">position ({y_label})'
           f'</text>']
    for k, (label, vals) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(vals) if v is not None))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        out.append(f'<text x="{pad_l + w - 4}" y="{pad_t + 12 + 12 * k}" font-size="10" fill="{color}" '
                   f'text-anchor="end">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def dtype_bars(artifacts: list[dict], width: int = 520) -> str:
    """Stacked horizontal bars: each artifact's bytes by storage dtype."""
    rows = [a for a in artifacts if a.get("weight_bytes_by_dtype")]
    biggest = max((sum(a["weight_bytes_by_dtype"].values()) for a in rows), default=1)
    dtypes = sorted({d for a in rows for d in a["weight_bytes_by_dtype"]})
    color = {d: COLORS[i % len(COLORS)] for i, d in enumerate(dtypes)}
    height = 24 * len(rows) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="size by dtype">']
    label_w, bar_w = 190, width - 200
    for r, a in enumerate(rows):
        x, y = label_w, 6 + 24 * r
        out.append(f'<text x="0" y="{y + 13}" font-size="11">{escape(a["name"][:28])}</text>')
        for d, b in sorted(a["weight_bytes_by_dtype"].items()):
            seg = bar_w * b / biggest
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{max(seg, 0.5):.1f}" height="16" fill="{color[d]}">'
                       f'<title>{escape(d)}: {b:,} bytes</title></rect>')
            x += seg
        total = sum(a["weight_bytes_by_dtype"].values())
        out.append(f'<text x="{min(x + 4, width - 60):.1f}" y="{y + 13}" font-size="10">{total / 1e6:.2f} MB</text>')
    legend_y = 24 * len(rows) + 22
    lx = 0
    for d in dtypes:
        out.append(f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10" fill="{color[d]}"/>'
                   f'<text x="{lx + 13}" y="{legend_y}" font-size="10">{escape(d)}</text>')
        lx += 20 + 7 * len(d)
    out.append("</svg>")
    return "".join(out)


def status_word(s: Status) -> str:
    """A row's status as the page shows it."""
    return "info (not gated)" if s is Status.INFO else s.value.replace("_", " ")


def _target_view(t: TargetReport) -> dict:
    charts = []
    for stage in ("quantization", "lowering", "end_to_end"):
        checks = [c for c in t.parity["checks"] if c["stage"] == stage and c.get("artifact")]
        if not checks:
            continue
        top1 = [(c["artifact"], c["top1_by_position"]) for c in checks]
        kl = [(c["artifact"], c.get("kl_by_position") or []) for c in checks]
        charts.append({"stage": stage,
                       "top1": line_chart(top1, f"{stage}: top-1 agreement by position (decisive)", "top-1", 1.0),
                       "kl": line_chart(kl, f"{stage}: mean KL by position", "KL")})
    lat = t.latency or {}
    here = latency_rows(lat)[0]
    pred = lat.get("predicted_on_device") or {}
    timings = []
    for p in pred.get("artifacts", []):
        h = here.get(p["artifact"], {})
        timings.append({
            "artifact": p["artifact"],
            "here": f"{h['decode_tok_s']['median']:.0f} tok/s, TTFT {h['ttft_ms']['median']:.1f} ms"
            if h.get("measured") else ("not run here: " + h["reason"] if h else "—"),
            "device": pred.get("device"),
            "predicted": (f"{p['decode_tok_s']['point']:.0f} ({p['decode_tok_s']['low']:.0f}–"
                          f"{p['decode_tok_s']['high']:.0f}) tok/s, TTFT {p['ttft_ms']['point']:.0f} ms, "
                          f"{p['memory_mb']:.0f} MB") if p.get("predicted") else p.get("reason", "—"),
        })
    return {"t": t, "charts": charts, "sizes": dtype_bars([a.to_json() for a in t.artifacts]),
            "latency": timings}


def _env():
    from jinja2 import Environment, FunctionLoader

    files = resources.files("edgeslm.reports")
    return Environment(autoescape=True, loader=FunctionLoader(lambda name: files.joinpath(name).read_text()))


def to_html(report: Report) -> str:
    return _env().get_template("report.html.j2").render(
        report=report, targets=[_target_view(t) for t in report.targets], status_word=status_word)


def fleet_html(fleet: FleetReport, rows: list[FleetRow], links: dict[str, str]) -> str:
    """A fleet's page: verdict, the models × targets table (each job linked to its own page where ``links``
    has it), the failed checks."""
    return _env().get_template("fleet.html.j2").render(fleet=fleet, rows=rows, links=links,
                                                       failures=fleet.failed_rows, status_word=status_word)
