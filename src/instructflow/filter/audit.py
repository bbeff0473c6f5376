"""instructflow-filter-audit: score a labelled file with the trained harm detector.

    instructflow-filter-audit FILE --text COL [--text2 COL] --label COL [--positive VALUE[,VALUE]]
                              [--records KEY] [--preset NAME] [--detector DIR] [--threshold P]
                              [--task prompt|text] [--no-offensive] [--json]

FILE is CSV, JSON (a list, or an object with the list at --records), or JSONL,
optionally .gz. Column names may be dotted paths into nested objects
(`annotations.toxicity.majority_human`, `instances.0.output`). --positive lists
the label values meaning unsafe (default 1). A --preset fills the options for
the public sets in ../shared/data (see `labelled.PRESETS` and docs/filter.md),
e.g. `--preset guardreasoner` splits BeaverTails' "Human user: ... AI assistant:
..." input into prompt and response and reads the verdict from `output`.

A detector with a threshold per task (backend tfidf-ensemble) scores rows with
a reply as exchanges and texts alone as prompts; `--task text` scores them as
comments (toxicity, hate), as the presets jigsaw, toxigen, hatecheck and
hate-offensive do by default.

Where the detector folder has the offensive-language member (`detector.offensive`),
a row whose reply (or text) it calls offensive is flagged, as in the filter;
`--no-offensive` scores the trained detector alone.

Prints precision, recall, F1, the confusion matrix and the threshold (JSON with
--json). Exit status 2 on a file or option problem, with a message naming it.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import detector as det
from . import labelled


# presets whose texts are comments, not user prompts (their threshold is the `text` task's)
COMMENT_PRESETS = ("jigsaw", "toxigen", "hatecheck", "hate-offensive")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="instructflow-filter-audit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--text", help="column with the text (prompt or comment)")
    ap.add_argument("--text2", help="optional column with the response to the text")
    ap.add_argument("--label", help="column with the label")
    ap.add_argument("--positive", help="comma-separated label values meaning unsafe (default: 1)")
    ap.add_argument("--records", help="dotted path to the row list inside a JSON object")
    ap.add_argument("--preset", default="", help=f"one of {sorted(labelled.PRESETS)}")
    ap.add_argument("--detector", default="models/detector", help="trained detector folder")
    ap.add_argument("--threshold", type=float, default=None, help="override the detector's threshold")
    ap.add_argument("--task", default="", choices=["", "prompt", "text"],
                    help="texts alone are prompts (default) or comments (text); per-task detectors only")
    ap.add_argument("--offensive", action=argparse.BooleanOptionalAction, default=True,
                    help="fold in the detector folder's offensive-language member, as the filter does "
                         "(--no-offensive: the trained detector alone)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    try:
        spec = labelled.spec_for(args.preset, text=args.text, text2=args.text2, label=args.label,
                                 positive=args.positive, records=args.records)
        if not spec.label:
            raise labelled.LabelledFileError("say which field holds the label: --label COL")
        texts, texts2, labels = labelled.load(args.file, spec)
        model = det.load(args.detector)
    except (labelled.LabelledFileError, FileNotFoundError, ValueError) as err:
        print(f"instructflow-filter-audit: {err}", file=sys.stderr)
        return 2
    threshold = model.threshold if args.threshold is None else args.threshold
    t2 = texts2 if any(texts2) else None
    if isinstance(model, det.TaskEnsemble):
        task = args.task or ("text" if args.preset in COMMENT_PRESETS else "prompt")
        scores = model.score(texts, t2, task=task)
    else:
        scores = model.score(texts, t2)
    if not args.offensive:
        model.offensive = None
    result = {"file": args.file, "detector": args.detector,
              "offensive_member": model.offensive.meta if model.offensive is not None else None,
              **det.metrics(det.with_offensive(model, scores, texts, t2, threshold), labels, threshold)}
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        c = result["confusion"]
        print(f"{args.file}: {result['n']} rows, {result['positives']} unsafe; detector {args.detector}, "
              f"threshold {threshold:.4f}")
        print(f"precision {result['precision']:.3f}  recall {result['recall']:.3f}  F1 {result['f1']:.3f}  "
              f"flagged {result['flagged_fraction']:.1%}")
        print("                 predicted unsafe  predicted safe")
        print(f"actually unsafe  {c['tp']:>16}  {c['fn']:>14}")
        print(f"actually safe    {c['fp']:>16}  {c['tn']:>14}")
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
