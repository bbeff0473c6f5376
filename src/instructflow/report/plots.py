"""The report's plots as SVG text, drawn with matplotlib: inline in report.html, files beside report.md.

Deterministic bytes: no date in the metadata, a fixed hash salt for matplotlib's
generated ids, text kept as <text> (svg.fonttype none). Ids are prefixed per plot
so several SVGs inline in one page never share an id. Labels that come from
data (source and category names) are escaped by matplotlib's SVG writer.
"""

from __future__ import annotations

import io
import re

RC = {"svg.hashsalt": "instructflow", "svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
      "axes.spines.right": False, "figure.dpi": 72}
COLORS = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")


def _svg(fig, name: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG is inlined in HTML
    prefix = re.sub(r"[^A-Za-z0-9_-]", "_", name) + "-"
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)
    return text.strip() + "\n"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def line_plot(name: str, title: str, series: dict[str, list[tuple[float, float]]], ylabel: str) -> str:
    """Curves sharing an x axis (step)."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig, ax = _figure(6.0, 2.8)
        for i, (label, points) in enumerate(sorted(series.items())):
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=label, color=COLORS[i % len(COLORS)], linewidth=1.4)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
        return _svg(fig, name)


def bar_plot(name: str, title: str, bars: list[tuple[str, int]]) -> str:
    """Horizontal bars with their counts: the data flow."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig, ax = _figure(6.0, 0.35 * len(bars) + 0.8)
        labels = [b[0] for b in bars][::-1]
        values = [b[1] for b in bars][::-1]
        ax.barh(range(len(values)), values, color=COLORS[0])
        ax.set_yticks(range(len(values)), labels)
        for i, v in enumerate(values):
            ax.annotate(str(v), (v, i), xytext=(3, 0), textcoords="offset points", va="center")
        ax.set_title(title)
        ax.set_xlabel("records")
        return _svg(fig, name)


def grouped_bars(name: str, title: str, categories: list[str], series: dict[str, list]) -> str:
    """Per category, one bar per model with its interval (leaves: {value, low, high})."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig, ax = _figure(max(4.0, 0.55 * len(categories) * max(1, len(series)) ** 0.5 + 2), 3.0)
        width = 0.8 / max(1, len(series))
        for i, (model, leaves) in enumerate(series.items()):
            xs = [c + (i - (len(series) - 1) / 2) * width for c in range(len(categories))]
            vals = [lf["value"] if lf else 0.0 for lf in leaves]
            err = [[max(0.0, lf["value"] - lf["low"]) if lf and lf.get("low") is not None else 0.0 for lf in leaves],
                   [max(0.0, lf["high"] - lf["value"]) if lf and lf.get("high") is not None else 0.0 for lf in leaves]]
            ax.bar(xs, vals, width=width, label=model, color=COLORS[i % len(COLORS)], yerr=err,
                   error_kw={"elinewidth": 0.8, "capsize": 2})
        ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        if all(lf is None or 0 <= lf["value"] <= 1 for leaves in series.values() for lf in leaves):
            ax.set_ylim(0, 1.05)  # rates
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
        return _svg(fig, name)
