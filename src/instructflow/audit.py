"""instructflow-audit PATH: where an artifact came from, and whether the workspace still agrees.

PATH is a model folder (its lineage.json), a stage's metrics or summary JSON (its
`lineage`), or the report (every stamped file beside it). The command follows the
lineage stamps back through the stages that produced each input (dvc.yaml names
which stage writes which path) to the raw files, and prints for every stage on the
way: the params it used (and which differ from params.yaml now), the seed, the
machine, the code by sha256 per file, and every input hash, each checked against
the workspace: `ok`, `MISMATCH` (the file changed since the artifact was made) or
`missing`. The raw end of the chain lists the sources with their licenses.
An adapter folder (LoRA or prompt tuning: `adapter_base.json` instead of
weights) is followed to the folder it applies to, whose hash is checked too:
an adapter on changed base weights is a different model.

The git commit is informational only (stamps name code by content): the audit
prints the workspace's commit, and whether the stamped code files still match it.

    instructflow-audit models/safety
    instructflow-audit reports/evaluate/metrics.json --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import config, lineage, training

OK, MISMATCH, MISSING = "ok", "MISMATCH", "missing"


# --------------------------------------------------------------------------- reading stamps
def read_stamp(path: Path) -> dict | None:
    """The lineage stamp held by a model folder, a lineage.json or a stage's metrics JSON."""
    if path.is_dir():
        path = path / "lineage.json"
    if not path.is_file() or path.suffix != ".json":
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    if path.name == "lineage.json" and "stage" in data:
        return data
    stamp = data.get("lineage")
    return stamp if isinstance(stamp, dict) and "stage" in stamp else None


def _name(entry) -> str:
    return next(iter(entry)) if isinstance(entry, dict) else str(entry)


def pipeline(root: Path) -> dict:
    """dvc.yaml's stages: stage -> {outs: [...], params: [...]}; {} without a dvc.yaml."""
    path = root / "dvc.yaml"
    if not path.is_file():
        return {}
    import yaml

    stages = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages") or {}
    return {name: {"outs": [_name(e) for key in ("outs", "metrics", "plots") for e in (entry.get(key) or [])],
                   "params": [p for p in (entry.get("params") or []) if isinstance(p, str)]}
            for name, entry in stages.items()}


def producer(stages: dict, path: str) -> tuple[str, str] | None:
    """(stage, output) for the stage whose output is `path` or a folder holding it."""
    for stage, entry in stages.items():
        for out in entry["outs"]:
            if path == out or path.startswith(out.rstrip("/") + "/"):
                return stage, out
    return None


def stamp_file(root: Path, stages: dict, stage: str, out: str) -> Path | None:
    """Where the stamp of the stage that wrote `out` lives: the output folder's lineage.json, else
    any of the stage's JSON outputs that carries a stamp of that stage."""
    candidates = [root / out / "lineage.json"] + [root / o for o in stages[stage]["outs"] if o.endswith(".json")]
    for cand in candidates:
        stamp = read_stamp(cand)
        if stamp is not None and stamp.get("stage") == stage:
            return cand
    return None


# --------------------------------------------------------------------------- checking
def check_hash(root: Path, path: str, sha: str) -> str:
    f = Path(path) if Path(path).is_absolute() else root / path
    if not f.is_file():
        return MISSING
    return OK if lineage.file_sha256(f) == sha else MISMATCH


def params_now(root: Path, stage: str, stages: dict) -> tuple[str | None, dict | None]:
    """(section, its current values in params.yaml) for a stage; the section is the one dvc.yaml declares."""
    sections = [p for p in (stages.get(stage) or {}).get("params", []) if p != "seed"]
    section = sections[0] if sections else (stage if stage in config.SECTIONS else None)
    path = root / config.PARAMS_FILE
    if section is None or not path.is_file():
        return section, None
    return section, config.read_params(path).get(section)


def _changes(stamped, now, prefix="") -> list[dict]:
    """Keys set in params.yaml now whose value differs from the stamped one (nested keys dotted)."""
    out = []
    for key in sorted(now or {}):
        where = f"{prefix}{key}"
        old, new = (stamped or {}).get(key), now[key]
        if isinstance(new, dict) and isinstance(old, dict):
            out += _changes(old, new, where + ".")
        elif old != new:
            out.append({"key": where, "stamped": old, "now": new})
    return out


def audit_stamp(root: Path, stages: dict, stamp: dict, where: str) -> dict:
    stage = stamp.get("stage")
    section, now = params_now(root, stage, stages)
    code = stamp.get("code") or {}
    inputs = []
    for path, sha in sorted((stamp.get("inputs") or {}).items()):
        prod = producer(stages, path)
        inputs.append({"path": path, "sha256": sha, "status": check_hash(root, path, sha),
                       "produced_by": prod[0] if prod else None})
    return {
        "stage": stage, "stamp": where, "seed": stamp.get("seed"), "machine": stamp.get("machine"),
        "params_section": section, "params": stamp.get("params"),
        "params_changed": _changes(stamp.get("params"), now) if now is not None else [],
        "code": {"sha256": code.get("sha256"),
                 "files": [{"path": p, "sha256": h, "status": check_hash(root, p, h)}
                           for p, h in sorted((code.get("files") or {}).items())]},
        "libraries": stamp.get("libraries"), "inputs": inputs,
        "sources": stamp.get("sources") or None,
    }


def chain(root: Path, start: Path) -> dict:
    """Every stage behind `start`, in the order met (the artifact first), and the raw files at the end."""
    stages = pipeline(root)
    start_stamps: list[tuple[Path, dict]] = []
    stamp = read_stamp(start)
    if stamp is not None:
        start_stamps.append((start / "lineage.json" if start.is_dir() else start, stamp))
    elif start.is_file() and start.suffix in (".md", ".html"):  # the report: every stamped file beside it
        for f in sorted(start.parent.glob("*/*.json")):
            if (s := read_stamp(f)) is not None:
                start_stamps.append((f, s))
    if not start_stamps:
        raise SystemExit(f"instructflow-audit: {start}: no lineage stamp found (expected a model folder with "
                         "lineage.json, a metrics/summary JSON with a `lineage` key, or reports/report.md)")
    seen: dict[str, dict] = {}
    todo = [(path, stamp, False) for path, stamp in start_stamps]
    while todo:
        path, stamp, stale = todo.pop(0)
        rel = _rel(path, root)
        key = f"{stamp.get('stage')}@{rel}"
        if key in seen:
            continue
        node = audit_stamp(root, stages, stamp, rel)
        # reached through an input whose hash no longer matches: the workspace's stamp here describes the
        # rerun, not the bytes the artifact was made from
        node["describes_artifact"] = not stale
        if stamp.get("stage") == "ingest":
            node["sources"] = _ingest_sources(path)
        if path.name == "lineage.json" and (adapter := adapter_node(root, path.parent)) is not None:
            node["adapter"] = adapter
            base_stamp = Path(adapter["resolved"]) / "lineage.json"
            if (bs := read_stamp(base_stamp)) is not None:  # followed even where no dvc.yaml stage names it
                todo.append((base_stamp, bs, stale or adapter["status"] != OK))
        seen[key] = node
        for inp in node["inputs"]:
            if inp["produced_by"]:
                stage, out = producer(stages, inp["path"])
                sf = stamp_file(root, stages, stage, out)
                if sf is not None:
                    todo.append((sf, read_stamp(sf), stale or inp["status"] != OK))
    nodes = list(seen.values())
    raw = [dict(i, stage=n["stage"]) for n in nodes for i in n["inputs"] if not i["produced_by"]]
    mismatches = sorted({f"{x['path']} ({x['status']})" for n in nodes
                         for x in [*n["inputs"], *n["code"]["files"]] if x["status"] != OK}
                        | {f"{n['adapter']['base']} (adapter base {n['adapter']['status']})" for n in nodes
                           if n.get("adapter") and n["adapter"]["status"] != OK})
    changed = sorted({f"{n['params_section']}.{c['key']}" for n in nodes for c in n["params_changed"]})
    return {"artifact": _rel(start, root), "stages": nodes, "raw_files": raw,
            "sources": next((n["sources"] for n in nodes if n.get("sources")), None),
            "mismatches": mismatches, "params_changed": changed, "workspace": lineage.git_state()}


def adapter_node(root: Path, folder: Path) -> dict | None:
    """An adapter folder's pointer, checked: does the base it names still hash to what it was trained on?"""
    pointer = training.read_pointer(folder)
    if pointer is None:
        return None
    base = Path(pointer["base"])
    where = base if base.is_absolute() else root / base
    if not where.is_dir():
        status = MISSING
    else:
        status = OK if training.folder_digest(where) == pointer["base_sha256"] else MISMATCH
    return {"method": pointer["method"], "base": pointer["base"], "base_sha256": pointer["base_sha256"],
            "status": status, "resolved": where.as_posix(), "chain": pointer.get("chain") or []}


def _ingest_sources(path: Path) -> dict | None:
    """Sources with licenses and counts from the ingest summary (the stamp's own file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data.get("sources") if isinstance(data.get("sources"), dict) else None


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


# --------------------------------------------------------------------------- text
def _short(sha) -> str:
    return (sha or "n/a")[:12]


def render(result: dict) -> str:
    lines = [f"audit of {result['artifact']}", ""]
    for n in result["stages"]:
        lines.append(f"stage {n['stage']}  (stamp: {n['stamp']})")
        if not n["describes_artifact"]:
            lines.append("  WARNING: reached through a changed input; this stamp describes the workspace's rerun, "
                         "not what the artifact was made from (dvc.lock of the artifact's commit has that)")
        mach = n.get("machine") or {}
        lines.append(f"  seed {n['seed']}; machine: {', '.join(f'{k} {v}' for k, v in mach.items()) or 'n/a'}")
        bad_code = [f for f in n["code"]["files"] if f["status"] != OK]
        lines.append(f"  code sha256 {_short(n['code']['sha256'])} over {len(n['code']['files'])} file(s): "
                     + ("all match the workspace" if not bad_code else
                        "differs: " + ", ".join(f"{f['path']} ({f['status']})" for f in bad_code)))
        params = json.dumps(n["params"], sort_keys=True, ensure_ascii=False)
        lines.append(f"  params ({n['params_section'] or 'n/a'}): {params if len(params) < 400 else params[:400] + '…'}")
        for c in n["params_changed"]:
            lines.append(f"    changed in params.yaml since: {c['key']}: {c['stamped']!r} -> {c['now']!r}")
        if a := n.get("adapter"):
            links = " -> ".join(f"{c['path']} ({c['method']})" for c in a["chain"])
            lines.append(f"  {a['method']} adapter on {a['base']}  sha256 {_short(a['base_sha256'])}  {a['status']}"
                         f"  (loads {links} -> this adapter)")
        for i in n["inputs"]:
            origin = f"from stage {i['produced_by']}" if i["produced_by"] else "raw"
            lines.append(f"  input {i['path']}  sha256 {_short(i['sha256'])}  {i['status']}  ({origin})")
        lines.append("")
    lines.append("raw files at the end of the chain:")
    for r in result["raw_files"] or []:
        lines.append(f"  {r['path']}  sha256 {_short(r['sha256'])}  {r['status']}  (read by {r['stage']})")
    if not result["raw_files"]:
        lines.append("  none (the corpus is generated by the seeded built-in generator)")
    if result["sources"]:
        lines.append("sources and licenses:")
        for name, s in sorted(result["sources"].items()):
            files = ", ".join(sorted((s.get("files") or {}))) if isinstance(s, dict) else ""
            lines.append(f"  {name}: license {s.get('license', 'n/a')}; {s.get('records', 'n/a')} records"
                         + (f"; files {files}" if files else ""))
    ws = result["workspace"]
    lines += ["", f"workspace: git commit {ws.get('commit') or 'n/a'}"
                  f"{' with uncommitted changes' if ws.get('dirty') else ''} (informational; stamps name code by content)"]
    if result["mismatches"]:
        lines.append(f"DOES NOT MATCH the workspace ({len(result['mismatches'])}): " + "; ".join(result["mismatches"]))
    else:
        lines.append("every stamped hash matches the workspace")
    if result["params_changed"]:
        lines.append("params changed since: " + ", ".join(result["params_changed"]))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="model folder, metrics/summary JSON, or reports/report.md|html")
    ap.add_argument("--root", default=".", help="the workspace (holds dvc.yaml and params.yaml)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any hash does not match the workspace")
    args = ap.parse_args(argv)
    result = chain(Path(args.root), Path(args.path))
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        sys.stdout.write(render(result))
    return 1 if args.strict and result["mismatches"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
