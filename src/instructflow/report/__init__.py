"""Stage report: every stage's numbers, with their lineage, in one document a reviewer reads.

Reads `params.yaml: report` (+ seed), every reports/*/summary.json and
reports/*/metrics.json, the dvclive curves under reports/*/live,
reports/evaluate/generations.jsonl and, when present, dvc.lock (not a declared
dependency: DVC writes it). Writes reports/report.md, reports/report.html and
the plots beside them (reports/plots/*.svg, which report.md links to).

Both documents are rendered from Jinja2 templates (report/templates/) over one
context, hold no timestamps or durations, and are byte-identical when the inputs
are. report.html is self-contained: inline CSS, plots inlined as SVG, no script
and nothing fetched. Corpus text is escaped in both (HTML autoescape; Markdown
escapes that also disarm links and images): the corpus holds harmful and
offensive text on purpose, and user data may hold markup. A missing input shows
as `n/a`; targets come from `report.targets` in params.yaml.
"""

from __future__ import annotations

import argparse
import html
import re
from pathlib import Path

from .. import config
from . import content as c

TITLE = "instructflow report"
TEMPLATES = Path(__file__).resolve().parent / "templates"
STATUS_CLASSES = ("PASS", "FAIL", "OK", "MISMATCH")
AUDIT = ("How to audit: `instructflow-audit models/safety` (raw files, params and code behind the final model, "
         "and which hashes still match the workspace), `dvc dag` (the stages), `dvc params diff` (what changed "
         "since the last commit). The git commit is not stamped into outputs (a fresh clone's rerun must give the "
         "same bytes): `git log -1 -- reports/report.md` names the commit that holds these numbers.")


# --------------------------------------------------------------------------- context
def build_context(data: dict, cfg: config.ReportConfig, seed: int, out: Path) -> dict:
    """Everything the templates show, as strings, tables and SVG text."""
    from . import plots

    stages, reports = data["stages"], Path(data["reports"])
    metrics = stages.get("evaluate") or {}
    models = c.eval_models(metrics)
    targets = c.targets_table(cfg.targets, models)
    acc = c.accounting(stages)
    figures = []

    def figure(name: str, title: str, svg: str) -> dict:
        fig = {"name": name, "title": title, "svg": svg, "file": f"plots/{name}.svg"}
        figures.append(fig)
        return fig

    flow_plot = figure("data-flow", "Where the raw records went", plots.bar_plot(
        "data-flow", "Where the raw records went", acc["bars"])) if acc["bars"] else None
    curves = []
    for stage in c.TRAIN_STAGES:
        series = {k: v for k, v in data["curves"].get(stage, {}).items() if "loss" in k}
        if series:
            curves.append(figure(f"loss-{stage}", f"{stage}: loss", plots.line_plot(
                f"loss-{stage}", f"{stage}: training curves", series, "loss")))
    judges = metrics.get("judges") if isinstance(metrics.get("judges"), dict) else {}
    judge_names = sorted(k for k in judges if k != "primary")
    categories = c.harm_categories(data["generations"])
    category = []
    suites = sorted(((metrics.get("prompts") or {}).get("suites") or {}))
    others = [j for j in judge_names if j != judges.get("primary")]  # the primary judge's chart comes first
    for chart in c.rate_charts(models, categories, others, suites):
        header, rows = c.category_table(chart)
        category.append({"title": chart["title"], "header": header, "rows": rows,
                         "plot": figure(chart["name"], chart["title"], plots.grouped_bars(
                             chart["name"], chart["title"], chart["categories"], chart["series"]))})
    eval_header, eval_rows = c.eval_table(models, categories)
    class_tables = [{"model": m, "rows": rows} for m in models if (rows := c.class_rows(models[m]))]
    src_header, src_rows = c.sources_table(stages)
    train_header, train_rows = c.training_table(stages)
    detector = c.class_rows(stages.get("detector") or {})
    filter_classes = c.class_rows({k: v for k, v in (stages.get("filter") or {}).items() if k != "lineage"})
    val = stages.get("validate") or {}
    eval_rel = data["files"].get("evaluate", "evaluate/metrics.json")
    return {
        "title": TITLE, "seed": seed,
        "passed": sum(r[-1] == "PASS" for r in targets), "n_targets": len(targets), "targets": targets,
        "conservation": acc["status"], "machines": c.machines(data),
        "models": list(models), "eval_groups": c.eval_groups(eval_header, eval_rows),
        "eval_note": c.source_note(data, eval_rel), "category": category, "class_tables": class_tables,
        "judges": [[name, "yes" if name == judges.get("primary") else "", c.fmt(judges[name])]
                   for name in judge_names],
        "settings": [[k, c.fmt(v)] for k, v in sorted((metrics.get("settings") or {}).items())]
        + [[f"prompts: {k}", c.fmt(v)] for k, v in sorted((metrics.get("prompts") or {}).items())]
        + [[f"toxicity: {k}", c.fmt(v)] for k, v in sorted((metrics.get("toxicity") or {}).items())],
        "class_header": c.CLASS_HEADER,
        "sources_header": src_header, "sources_rows": src_rows, "per_source": c.per_source_flow(stages),
        "flow": acc["flow"], "checks": acc["checks"],
        "flow_plot": flow_plot,
        "data_note": c.source_note(data, *(data["files"][s] for s in c.DATA_STAGES if s in data["files"])),
        "quarantine": [[k, c.fmt(v)] for k, v in sorted((val.get("quarantined_by_rule") or {}).items())],
        "data_docs": c.data_docs_link(val, reports, out),
        "removed": [[k, c.fmt(v)] for k, v in sorted(((stages.get("filter") or {}).get("removed_by_reason")
                                                      or {}).items())],
        "detector": detector + filter_classes,
        "detector_note": c.source_note(data, *(data["files"][s] for s in ("detector", "filter") if s in data["files"])),
        "train_header": train_header, "train_rows": train_rows, "curves": curves,
        "train_note": c.source_note(data, *(data["files"][s] for s in c.TRAIN_STAGES if s in data["files"])),
        "samples": c.sample_blocks(data["generations"], cfg.examples_per_group),
        "samples_note": c.source_note(data, c.GENERATIONS),
        "lineage_header": c.LINEAGE_HEADER, "lineage_rows": c.lineage_rows(data),
        "lock": data["lock"] is not None, "lock_rows": c.lock_rows(data["lock"]), "audit": AUDIT,
        "figures": figures,
    }


# --------------------------------------------------------------------------- rendering
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~<>])")


def md_escape(text) -> str:
    """Corpus text inert in Markdown: HTML entities for & < >, backslashes before every character that
    could start emphasis, code, a link or an image (`![x](http://...)` shows as text), line breaks as <br>."""
    text = html.escape(str(text), quote=False)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def md_text(text) -> str:
    """Our own prose (may hold `code` spans); still escapes angle brackets."""
    return html.escape(str(text), quote=False)


def status_class(cell) -> str:
    word = str(cell).split(" ")[0]
    return word if word in STATUS_CLASSES else ""


def code_spans(text) -> str:
    """Our own prose with `code` spans as <code>; escaped first, so it is safe for any text."""
    from markupsafe import Markup

    return Markup(re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(str(text))))


def html_cell(text):
    """Escaped text with line breaks kept."""
    from markupsafe import Markup

    return Markup(html.escape(str(text)).replace("\r\n", "\n").replace("\n", "<br>"))


def environment(kind: str):
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=(kind == "html"), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(md=md_escape, mdtext=md_text, status=status_class, code=code_spans, cell=html_cell)
    return env


def render(context: dict) -> tuple[str, str]:
    """(report.md, report.html) text."""
    md = environment("md").get_template("report.md.j2").render(**context)
    page = environment("html").get_template("report.html.j2").render(**context)
    tidy = lambda s: re.sub(r"\n{3,}", "\n\n", s).rstrip("\n") + "\n"  # noqa: E731
    return tidy(md), tidy(page)


def write(out: Path, context: dict) -> list[Path]:
    md, page = render(context)
    out.mkdir(parents=True, exist_ok=True)
    plots_dir = out / "plots"
    if plots_dir.is_dir():  # only this run's plots: a stale one would be versioned with the report
        for old in plots_dir.glob("*.svg"):
            old.unlink()
    plots_dir.mkdir(exist_ok=True)
    written = []
    for fig in context["figures"]:
        (out / fig["file"]).write_text(fig["svg"], encoding="utf-8", newline="\n")
        written.append(out / fig["file"])
    (out / "report.md").write_text(md, encoding="utf-8", newline="\n")
    (out / "report.html").write_text(page, encoding="utf-8", newline="\n")
    return [out / "report.md", out / "report.html", *written]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=config.PARAMS_FILE)
    ap.add_argument("--reports", default="reports")
    ap.add_argument("--lock", default="dvc.lock")
    ap.add_argument("--out", default="reports")
    args = ap.parse_args(argv)
    cfg, seed = config.load("report", args.params)
    out = Path(args.out)
    data = c.load_inputs(args.reports, args.lock)
    context = build_context(data, cfg, seed, out)
    write(out, context)
    print(f"report: targets passed {context['passed']}/{context['n_targets']}; conservation "
          f"{context['conservation']}; wrote {out / 'report.md'}, {out / 'report.html'} and "
          f"{len(context['figures'])} plot(s)")
