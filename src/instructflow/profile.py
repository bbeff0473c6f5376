"""Apply a params profile: merge a partial params file into params.yaml.

    python -m instructflow.profile apply profiles/params/smollm2.yaml   # writes params.yaml
    python -m instructflow.profile show profiles/params/smollm2.yaml    # prints the merged file
    python -m instructflow.profile flags profiles/params/smollm2.yaml   # `-S key=value` for `dvc exp run`

A profile holds only the keys it changes. Mappings merge key by key; any other
value (a list such as `ingest.sources`, a number, a string) replaces the old
one. The merged file is validated against the params schema before anything
is written, so a profile with a misspelt key changes nothing and names the key.
Comments and key order of params.yaml are kept (ruamel.yaml round trip).
`flags` prints the same change as `dvc exp run -S` arguments, for an
experiment instead of a new committed baseline.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from . import config


def merge(base, over):
    """`over` merged into `base` in place (mappings key by key, everything else replaced); returns base."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def _roundtrip():
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip mode: comments and order survive
    yaml.preserve_quotes = True
    yaml.width = 4096  # no re-wrapping of long flow lists
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _quote_ambiguous(node):
    """Quote strings that the stages' YAML 1.1 reader would take for something else.

    ruamel writes YAML 1.2, where `Yes`, `No`, `on` or `1e-3` are plain strings;
    `config.read_params` (PyYAML, 1.1 rules) would read them back as booleans or
    numbers. A profile value that is a string must stay one."""
    import yaml
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    def fix(value):
        if isinstance(value, dict):
            for k in list(value):
                value[k] = fix(value[k])
        elif isinstance(value, list):
            for i, v in enumerate(value):
                value[i] = fix(v)
        elif isinstance(value, str) and not isinstance(value, DoubleQuotedScalarString):
            try:
                reread = yaml.load(value, Loader=config._yaml_loader())
            except yaml.YAMLError:
                return value
            if not isinstance(reread, str):
                return DoubleQuotedScalarString(value)
        return value

    return fix(node)


def _plain(node):
    """ruamel's commented containers -> plain dicts/lists (for schema validation)."""
    return json.loads(json.dumps(node, default=str))


def flags(profile: dict, prefix: str = "") -> list[str]:
    """`-S key=value` arguments for `dvc exp run` (values in JSON, which YAML reads back)."""
    out = []
    for key, value in profile.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += flags(value, name + ".")
        else:
            out.append(f"-S {name}={json.dumps(value, ensure_ascii=False, separators=(',', ':'))}")
    return out


def applied(profile_path: str | Path, params_path: str | Path) -> str:
    """The text of params.yaml with the profile merged in (validated; nothing written)."""
    yaml = _roundtrip()
    params = yaml.load(Path(params_path).read_text(encoding="utf-8"))
    profile = config.read_params(profile_path)
    if not isinstance(profile, dict) or not profile:
        raise config.ParamsError(f"{profile_path}: a profile must be a non-empty mapping of params sections")
    merge(params, profile)
    try:
        config.validate_params(_plain(params))
    except config.ParamsError as err:
        raise config.ParamsError(f"{profile_path} applied to {params_path}: {err}") from None
    _quote_ambiguous(params)
    buf = io.StringIO()
    yaml.dump(params, buf)
    return buf.getvalue()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["apply", "show", "flags"])
    ap.add_argument("profile", help="partial params file, e.g. profiles/params/smollm2.yaml")
    ap.add_argument("--params", default=config.PARAMS_FILE, help="params file to merge into (default params.yaml)")
    args = ap.parse_args(argv)
    try:
        if args.action == "flags":
            print(" ".join(flags(config.read_params(args.profile))))
            return
        text = applied(args.profile, args.params)
    except (config.ParamsError, OSError) as err:
        sys.exit(f"profile: {err}")
    if args.action == "show":
        sys.stdout.write(text)
    else:
        Path(args.params).write_text(text, encoding="utf-8")
        print(f"profile: {args.profile} merged into {args.params}; `dvc status` shows the stages it makes stale")


if __name__ == "__main__":
    main()
