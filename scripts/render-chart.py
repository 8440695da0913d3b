#!/usr/bin/env python3
"""Renders charts/weir with Helm's own library (helm-python-sdk, installed into .venv by
scripts/setup.sh), as `helm template` would.

    .venv/bin/python scripts/render-chart.py [--values FILE.json] [--release NAME]
                                              [--namespace NS] [--validate-only]

Prints every rendered template (files joined with `---`, each preceded by a `# Source:`
comment) on stdout. Values are JSON (a subset of YAML that needs no parser here). Exit 1,
with Helm's message on stderr, when the values do not meet values.schema.json or a
template fails.
"""
import argparse
import json
import os
import sys

import helm_python as helm

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "charts", "weir")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--values", help="a JSON file of values")
    parser.add_argument("--release", default="weir")
    parser.add_argument("--namespace", default="weir-system")
    parser.add_argument("--validate-only", action="store_true")
    args = parser.parse_args()
    values = {}
    if args.values:
        with open(args.values, encoding="utf-8") as f:
            values = json.load(f)
    try:
        with helm.Chart.load(CHART) as chart:
            chart.validate_schema(values)
            if args.validate_only:
                return 0
            manifests = chart.render(values, name=args.release, namespace=args.namespace)
    except helm.HelmError as e:
        print(f"helm: {e}", file=sys.stderr)
        return 1
    for path in sorted(manifests):
        text = manifests[path].strip()
        if text:
            print(f"---\n# Source: {path}\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
