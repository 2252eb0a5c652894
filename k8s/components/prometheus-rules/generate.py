"""Write prometheusrule.yaml (this folder) from compose/prometheus/alerts.yml, the one source.

    python k8s/components/prometheus-rules/generate.py           # rewrite it
    python k8s/components/prometheus-rules/generate.py --check   # exit 1 when it is stale

A kustomize generator makes ConfigMaps, not a PrometheusRule's spec, so the rules file's
text is copied under ``spec:`` (its comments too), indented. tests/test_alert_rules.py
renders the component with kustomize and fails when its groups differ from the file's.
Standard library only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SOURCE = REPO / "compose" / "prometheus" / "alerts.yml"
TARGET = HERE / "prometheusrule.yaml"

HEADER = """\
# GENERATED from compose/prometheus/alerts.yml by generate.py in this folder: edit that
# file, then run `python k8s/components/prometheus-rules/generate.py` (the tests fail while
# the two differ). The alerts, their thresholds and runbooks: docs/runbook.md.
#
# The Prometheus Operator loads it when its ruleSelector matches these labels (see
# kustomization.yaml in this folder).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: eshop-alerts
  namespace: eshop
  labels:
    app.kubernetes.io/name: eshop-alerts
    app.kubernetes.io/part-of: eshop
spec:
"""


def render(source: str) -> str:
    """The PrometheusRule holding ``source``'s groups, from ``groups:`` on, indented once."""
    lines = source.splitlines()
    starts = [i for i, line in enumerate(lines) if line.rstrip() == "groups:"]
    top_level = [
        line for line in lines if line and not line[0].isspace() and not line.startswith("#")
    ]
    if len(starts) != 1 or top_level != ["groups:"]:
        raise SystemExit(f"{SOURCE}: expected one top-level key, `groups:`, found {top_level}")
    body = [f"  {line}" if line.strip() else "" for line in lines[starts[0] :]]
    return HEADER + "\n".join(body) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is stale")
    args = parser.parse_args()
    wanted = render(SOURCE.read_text())
    current = TARGET.read_text() if TARGET.exists() else ""
    if args.check:
        if current != wanted:
            print(f"{TARGET.relative_to(REPO)} is stale: run {Path(__file__).relative_to(REPO)}")
            return 1
        return 0
    if current != wanted:
        TARGET.write_text(wanted)
        print(f"wrote {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
