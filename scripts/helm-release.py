#!/usr/bin/env python3
"""Installs, upgrades or uninstalls charts/weir in the cluster KUBECONFIG points at, with
Helm's own library (helm-python-sdk in .venv), for the `needs cluster` tests and for
machines without the helm binary.

    .venv/bin/python scripts/helm-release.py install|upgrade [--values FILE.json]
                                            [--release NAME] [--namespace NS] [--timeout S]
    .venv/bin/python scripts/helm-release.py uninstall [--release NAME] [--namespace NS]

install and upgrade wait until every object is ready (Helm's watcher).
"""
import argparse
import json
import os
import sys

import helm_python as helm

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "charts", "weir")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["install", "upgrade", "uninstall"])
    parser.add_argument("--values", help="a JSON file of values")
    parser.add_argument("--release", default="weir")
    parser.add_argument("--namespace", default="weir-system")
    parser.add_argument("--timeout", type=int, default=300)
    args = parser.parse_args()
    values = {}
    if args.values:
        with open(args.values, encoding="utf-8") as f:
            values = json.load(f)
    try:
        with helm.Config(namespace=args.namespace) as cfg:
            if args.action == "uninstall":
                cfg.uninstall(args.release)
                return 0
            act = cfg.install if args.action == "install" else cfg.upgrade
            kwargs = {"create_namespace": True} if args.action == "install" else {}
            release = act(CHART, args.release, values, wait="watcher",
                          timeout=args.timeout, **kwargs)
            print(json.dumps({"revision": release.get("revision"), "status": release.get("status")}))
    except helm.HelmError as e:
        print(f"helm: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
