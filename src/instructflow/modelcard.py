"""Model cards: the README.md of a model folder, in the Hugging Face model-card format.

Built with `huggingface_hub.ModelCard` / `ModelCardData` so the YAML front matter
is what the Hub expects (tags, license, `model-index` evaluation results). The
card carries the lineage stamp in prose (stage, inputs by sha256, params, code
by sha256, machine, libraries) and the training metrics. The evaluation table
is added when evaluation results are at hand: the training stages write their
card before evaluation runs, and `instructflow-modelcard MODEL --evaluation
reports/evaluate/metrics.json --out CARD.md` writes the card a model is
published with (it never rewrites a DVC-tracked model folder).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TEMPLATE = """---
{{ card_data }}
---

# instructflow `{{ stage }}` model

{{ summary }}

## How it was made

- Stage: `{{ stage }}` of the instructflow pipeline (`dvc.yaml`), seed {{ seed }}
- Code: sha256 `{{ code_sha }}` over the files the stage runs (below); the git commit is not stamped, see `git log`
- Base: {{ base }}
- Machine: {{ machine }}
{% if adapter %}
## Adapter

This folder holds a PEFT {{ adapter.method }} adapter, not full weights. It applies to
`{{ adapter.base }}` (folder sha256 `{{ adapter.base_sha256 }}`, its files listed in
`adapter_base.json`), loaded from the full weights up through:
{% for link in adapter.chain %}
{{ loop.index }}. `{{ link.path }}` ({{ link.method }}), sha256 `{{ link.sha256 }}`{% endfor %}
{% endif %}
### Inputs (sha256)

{% for path, sha in inputs.items() %}- `{{ path }}`: `{{ sha }}`
{% endfor %}
### Code (sha256)

{% for path, sha in code_files.items() %}- `{{ path }}`: `{{ sha }}`
{% endfor %}
### Parameters

```yaml
{{ params }}
```

### Training metrics

```json
{{ metrics }}
```
{% if evaluation %}
## Evaluation

Rates with 95% Wilson intervals and the number of prompts behind them, from `{{ evaluation_source }}`.

| metric | value | 95% interval | n |
|---|---|---|---|
{% for row in evaluation %}| {{ row.metric }} | {{ row.value }} | {{ row.interval }} | {{ row.n }} |
{% endfor %}{% endif %}
### Libraries

{{ libraries }}

The same facts, machine-readable, are in `lineage.json` next to this card;
`instructflow-audit <this folder>` checks them against a workspace.
{% if adapter %}Load it with `instructflow.training.load_model("<this folder>")` (loads the base above, applies
{% if adapter.method == "lora" %}and merges {% endif %}the adapter, and checks the base's hash), or with PEFT:
`PeftModel.from_pretrained(<the base model, loaded the same way>, "<this folder>")`; no remote code is needed.
{% else %}Load it with `AutoModelForCausalLM.from_pretrained("<this folder>")`; no remote code is needed.
{% endif %}"""


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def evaluation_rows(evaluation: dict | None, model: str) -> list[dict]:
    """Flat rows {metric, value, interval, n} of one model's evaluation results.

    A metric is a number, or a dict with `value` (or `rate`), optional `low`/`high`
    (or `ci`: [low, high]) and `n`; nested groups become dotted names."""
    rows: list[dict] = []

    def walk(prefix: str, obj) -> None:
        if isinstance(obj, bool) or obj is None:
            return
        if isinstance(obj, (int, float)):
            rows.append({"metric": prefix, "value": _fmt(obj), "interval": "n/a", "n": "n/a"})
            return
        if not isinstance(obj, dict):
            return
        value = obj.get("value", obj.get("rate"))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = obj.get("low"), obj.get("high")
            if isinstance(obj.get("ci"), (list, tuple)) and len(obj["ci"]) == 2:
                low, high = obj["ci"]
            interval = f"[{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else "n/a"
            rows.append({"metric": prefix, "value": _fmt(value), "interval": interval, "n": _fmt(obj.get("n"))})
            return
        for key in sorted(obj):
            if key != "lineage":
                walk(f"{prefix}.{key}" if prefix else str(key), obj[key])

    per_model = (evaluation or {}).get("models", evaluation or {})
    walk("", (per_model or {}).get(model) or {})
    return rows


def build(stamp: dict, summary: str, base: str, metrics: dict, evaluation: dict | None = None,
          evaluation_source: str = "reports/evaluate/metrics.json", adapter: dict | None = None):
    """A huggingface_hub.ModelCard for a model folder's stamp (+ evaluation results if given).

    `adapter`: the folder's adapter pointer (`adapter_base.json`) when it holds a PEFT
    adapter instead of weights; the card then says what it applies to and how to load it."""
    import yaml
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    stage = stamp["stage"]
    rows = evaluation_rows(evaluation, stage)
    results = [EvalResult(task_type="text-generation", dataset_type="instructflow-eval",
                          dataset_name="instructflow evaluation prompts", metric_type=r["metric"],
                          metric_value=float(r["value"])) for r in rows if r["value"] != "n/a"]
    data = ModelCardData(library_name="peft" if adapter else "transformers", pipeline_tag="text-generation",
                         license="other", tags=["instructflow", stage, *([adapter["method"]] if adapter else [])],
                         model_name=f"instructflow-{stage}",
                         eval_results=results or None)
    code = stamp.get("code") or {}
    machine = stamp.get("machine") or {}
    return ModelCard.from_template(
        data, template_str=TEMPLATE, stage=stage, summary=summary, seed=stamp.get("seed"), base=base,
        code_sha=code.get("sha256", "n/a"), code_files=code.get("files") or {},
        machine=", ".join(f"{k} {v}" for k, v in machine.items()) or "n/a",
        inputs=stamp.get("inputs") or {}, params=yaml.safe_dump(stamp.get("params"), sort_keys=True).strip(),
        metrics=json.dumps(metrics, indent=2, sort_keys=True), evaluation=rows,
        evaluation_source=evaluation_source, adapter=adapter,
        libraries=", ".join(f"{k} {v}" for k, v in (stamp.get("libraries") or {}).items()),
    )


def write(out: Path, stamp: dict, summary: str, base: str, metrics: dict, evaluation: dict | None = None,
          adapter: dict | None = None) -> None:
    """README.md of a model folder (of an adapter folder when `adapter` is its pointer)."""
    (Path(out) / "README.md").write_text(str(build(stamp, summary, base, metrics, evaluation, adapter=adapter)),
                                         encoding="utf-8", newline="\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model folder with lineage.json")
    ap.add_argument("--evaluation", default="reports/evaluate/metrics.json", help="evaluation metrics JSON")
    ap.add_argument("--out", default="-", help="where to write the card (default: stdout)")
    args = ap.parse_args(argv)
    lineage = json.loads((Path(args.model) / "lineage.json").read_text(encoding="utf-8"))
    ev_path = Path(args.evaluation)
    evaluation = json.loads(ev_path.read_text(encoding="utf-8")) if ev_path.is_file() else None
    pointer = Path(args.model) / "adapter_base.json"  # training.POINTER (training's imports are not needed here)
    adapter = json.loads(pointer.read_text(encoding="utf-8")) if pointer.is_file() else None
    card = build(lineage, f"Model folder `{args.model}`.", lineage.get("base", "n/a"), lineage.get("metrics") or {},
                 evaluation, args.evaluation, adapter=adapter)
    if args.out == "-":
        print(card)
    else:
        Path(args.out).write_text(str(card), encoding="utf-8", newline="\n")


if __name__ == "__main__":
    main()
