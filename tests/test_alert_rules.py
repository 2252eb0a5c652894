"""The alert rules (compose/prometheus/alerts.yml): valid, unit-tested, documented, written on
metrics the services really expose, loaded by compose, and the same in the k8s component.

promtool (Debian's `prometheus` package) checks the rules and runs their unit tests
(compose/prometheus/alerts_test.yml), which must show every alert firing and not firing.
The metric names and labels an expression may use are read from the services themselves:
each service's Django is set up in a subprocess, the module gunicorn serves is imported, and
its Prometheus registry lists every family with its labels (no database or broker needed).
The PrometheusRule of k8s/components/prometheus-rules is rendered with `kubectl kustomize`
and must carry exactly the rules file's groups. A missing tool fails the test with the
command that installs it; nothing is skipped.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_DIR = REPO / "compose"
RULES = COMPOSE_DIR / "prometheus" / "alerts.yml"
RULES_TEST = COMPOSE_DIR / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = COMPOSE_DIR / "prometheus.yml"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
RUNBOOK = REPO / "docs" / "runbook.md"
COMPONENT = REPO / "k8s" / "components" / "prometheus-rules"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

SERVICES = ("gateway", "catalog", "users", "orders")
# What gunicorn serves for each service (Procfile, compose/entrypoint.sh): importing it
# registers what a running process exports (the gateway's proxy metrics live below Django).
APP_MODULES = {
    "gateway": "gateway_svc.asgi",
    "catalog": "catalog_svc.wsgi",
    "users": "users_svc.wsgi",
    "orders": "orders_svc.wsgi",
}
# Series Prometheus makes itself for every target, with no label of their own.
PROMETHEUS_SERIES = {"up"}
# Labels Prometheus attaches to every scraped series (compose/prometheus.yml; in k8s the
# component's PodMonitor). A scraped label with one of these names becomes exported_<name>.
TARGET_LABELS = {"job", "instance", "service"}
SEVERITIES = {"critical", "warning"}
PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip

# Run in each service's folder with its settings: every family the registry holds, by the
# names of the series it exposes, with their labels; the URL names (django-prometheus's
# `view` label); and label values the collectors write, for the matchers to be checked on.
EXPOSITION_SCRIPT = r"""
import importlib, inspect, json, os, re, sys
import django
django.setup()
importlib.import_module(os.environ["APP_MODULE"])
from django.urls import URLPattern, URLResolver, get_resolver
from prometheus_client import REGISTRY

SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
            "gauge": [""], "summary": ["", "_sum", "_count"], "info": ["_info"],
            "unknown": [""], "stateset": [""], "gaugehistogram": ["_bucket", "_gsum", "_gcount"]}
series = {}
for collector in list(REGISTRY._collector_to_names):
    describe = getattr(collector, "describe", None)
    families = list(describe()) if describe else []
    if not families:
        families = list(collector.collect())
    for family in families:
        labels = list(getattr(collector, "_labelnames", None) or getattr(family, "_labelnames", ()))
        for suffix in SUFFIXES[family.type]:
            extra = ["le"] if suffix == "_bucket" else []
            series[family.name + suffix] = sorted(set(labels + extra))

def names(patterns, namespace=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from names(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield namespace + pattern.name

values = {"view": sorted(set(names(get_resolver().url_patterns)))}
from common.events.metrics import QueueCollector
values["kind"] = sorted(set(re.findall(r'"(\w+)"', inspect.getsource(QueueCollector.fill))))
if os.environ["SERVICE"] == "orders":
    from orders.metrics import DECISION_QUANTILES
    values["quantile"] = [str(q) for q in DECISION_QUANTILES]
print(json.dumps({"series": series, "values": values}))
"""


# ------------------------------------------------------------------ helpers


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if not Path(PROMTOOL).exists():
        pytest.fail("promtool is missing: apt-get install prometheus (Debian's package ships it)")
    return run([PROMTOOL, *args])


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    found = [rule for rule in rules() if "alert" in rule]
    by_name = {rule["alert"]: rule for rule in found}
    assert len(by_name) == len(found), "two alerts share a name"
    return by_name


def slug(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """Level-2 sections of docs/runbook.md by anchor: their text."""
    sections: dict[str, str] = {}
    current = None
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("## "):
            current = slug(line[3:])
            assert current not in sections, f"two sections of {RUNBOOK.name} are #{current}"
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def management_commands() -> set[str]:
    return {
        path.stem
        for path in REPO.glob("*/**/management/commands/*.py")
        if not path.name.startswith("_") and ".venv" not in path.parts
    } | {"migrate"}  # Django's own, named by the runbook


SELECTOR = re.compile(
    r'(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{(?P<body>(?:[^{}"]|"(?:[^"\\]|\\.)*")*)\}'
)
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The series selectors of a PromQL expression: (metric name, [(label, op, value)])."""
    found = []

    def keep(match: re.Match[str]) -> str:
        matchers = MATCHER.findall(match["body"])
        name = match["name"] or next((v for label, op, v in matchers if label == "__name__"), "")
        assert name, f"a selector without a metric name in {expr!r}"
        found.append((name, [m for m in matchers if m[0] != "__name__"]))
        return " "

    rest = SELECTOR.sub(keep, expr)
    rest = re.sub(r'"(?:[^"\\]|\\.)*"', " ", rest)  # string arguments (label_replace...)
    rest = GROUPING.sub(" ", rest)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)  # range and subquery durations
    for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", rest):
        if match[1].lower() not in PROMQL_KEYWORDS:
            found.append((match[1], []))
    return found


def alternatives(op: str, value: str) -> list[str]:
    """The literal values a matcher names (a regex's alternatives when they are plain)."""
    if op in ("=", "!="):
        return [value] if value else []
    parts = value.split("|")
    return [part for part in parts if re.fullmatch(r"[\w\-.:]+", part)]


@functools.cache
def exposition() -> dict[str, Any]:
    """Per service, what its running processes export (see EXPOSITION_SCRIPT)."""
    var = Path(tempfile.mkdtemp(prefix="eshop-metrics-"))
    processes = {}
    for service, module in APP_MODULES.items():
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(var)),
            "ENVIRONMENT": "local",
            "VAR_DIR": str(var / service),
            "DJANGO_SETTINGS_MODULE": f"{service}_svc.settings",
            "PYTHONPATH": str(REPO / f"{service}_svc"),
            "APP_MODULE": module,
            "SERVICE": service,
        }
        processes[service] = subprocess.Popen(
            [sys.executable, "-c", EXPOSITION_SCRIPT],
            cwd=REPO / f"{service}_svc",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    found = {}
    try:
        for service, process in processes.items():
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, f"{service}: {err[-3000:]}"
            found[service] = json.loads(out.strip().splitlines()[-1])
    finally:
        for process in processes.values():
            process.kill()
        shutil.rmtree(var, ignore_errors=True)
    return found


def exposed_series() -> dict[str, set[str]]:
    """Every series name any service exports -> the labels it carries once scraped."""
    series: dict[str, set[str]] = {name: set(TARGET_LABELS) for name in PROMETHEUS_SERIES}
    for found in exposition().values():
        for name, labels in found["series"].items():
            scraped = {f"exported_{label}" if label in TARGET_LABELS else label for label in labels}
            series.setdefault(name, set(TARGET_LABELS)).update(scraped)
    return series


def known_values() -> dict[str, set[str]]:
    values: dict[str, set[str]] = {}
    for found in exposition().values():
        for label, names in found["values"].items():
            values.setdefault(label, set()).update(names)
    return values


def scrape_job() -> dict[str, Any]:
    jobs = [
        job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"] if job.get("dns_sd_configs")
    ]
    assert len(jobs) == 1, "one job scrapes the services"
    return jobs[0]


@functools.cache
def render_with_component() -> list[dict[str, Any]]:
    """k8s/base plus the component, rendered as `kubectl apply -k` would (in a copy)."""
    if not Path(KUBECTL).exists():
        pytest.fail("kubectl is missing: apt-get install kubernetes-client (or kubectl)")
    root = Path(tempfile.mkdtemp(prefix="eshop-k8s-rules-"))
    try:
        shutil.copytree(REPO / "k8s", root / "k8s", ignore=shutil.ignore_patterns("secrets"))
        overlay = root / "k8s" / "overlays" / "with-rules"
        overlay.mkdir(parents=True)
        (overlay / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": ["../../base"],
                    "components": ["../../components/prometheus-rules"],
                }
            )
        )
        result = run([KUBECTL, "kustomize", str(overlay)])
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------ promtool


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout, result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = load_yaml(RULES_TEST)
    assert [(RULES_TEST.parent / path).resolve() for path in tests["rule_files"]] == [RULES]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alerts())
    assert names - firing == set(), "never seen firing"
    assert names - quiet == set(), "never seen quiet"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def test_unit_test_series_are_shaped_like_real_ones() -> None:
    """The tests feed series as a scrape would store them: real names and labels only."""
    series = exposed_series()
    for case in load_yaml(RULES_TEST)["tests"]:
        for item in case.get("input_series", []):
            ((name, matchers),) = selectors(item["series"])
            assert name in series, f"{case['name']}: no service exports {name}"
            labels = {label for label, _, _ in matchers}
            assert labels <= series[name], f"{case['name']}: {name} has no {labels - series[name]}"
            if name not in PROMETHEUS_SERIES:
                assert {"job", "instance", "service"} <= labels, f"{case['name']}: {item['series']}"


# ------------------------------------------------------------------ the rules themselves


def test_the_selector_parser_finds_every_metric_and_matcher() -> None:
    expr = (
        'sum by (service, le) (rate(a_bucket{job="eshop", view!~"x|y"}[5m])) / ignoring(le) '
        'b_total > 0 or absent(up{service="orders"}) and on (instance) c:recorded offset 5m'
    )
    assert selectors(expr) == [
        ("a_bucket", [("job", "=", "eshop"), ("view", "!~", "x|y")]),
        ("up", [("service", "=", "orders")]),
        ("b_total", []),
        ("c:recorded", []),
    ]


def test_alert_expressions_use_only_metrics_and_labels_the_services_expose() -> None:
    series = exposed_series()
    values = known_values()
    services = {name for config in scrape_job()["dns_sd_configs"] for name in config["names"]}
    for name, rule in alerts().items():
        found = selectors(rule["expr"])
        assert found, name
        for metric, matchers in found:
            assert metric in series, f"{name}: no service exports {metric}"
            for label, op, value in matchers:
                assert label in series[metric], f"{name}: {metric} has no label {label}"
                literals = alternatives(op, value)
                if label == "job":
                    assert literals == [scrape_job()["job_name"]], f"{name}: job {value}"
                elif label == "service":
                    assert set(literals) <= services, f"{name}: service {value}"
                elif label in values:
                    assert set(literals) <= values[label], f"{name}: {label}={value} never exported"


def test_every_alert_has_severity_summary_description_runbook_and_a_for_duration() -> None:
    for name, rule in alerts().items():
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), name
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), f"{name}: no summary"
        assert annotations.get("description", "").strip(), f"{name}: no description"
        assert annotations.get("runbook_url") == f"docs/runbook.md#{slug(name)}", name
        duration = re.fullmatch(r"(\d+)([sm])", rule.get("for", ""))
        assert duration, f"{name}: no `for:` (a single bad scrape would page someone)"
        seconds = int(duration[1]) * (60 if duration[2] == "m" else 1)
        assert 60 <= seconds <= 15 * 60, f"{name}: for {rule['for']}"


def test_every_runbook_link_lands_on_a_section_that_says_what_to_do() -> None:
    sections = runbook_sections()
    commands = management_commands()
    for name, rule in alerts().items():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in sections, f"{name}: no section #{anchor} in {RUNBOOK.name}"
        text = sections[anchor]
        for part in ("**Fires when**", "**Look.**", "**Act.**", "**Done when**"):
            assert part in text, f"#{anchor} has no {part}"
    alert_anchors = {slug(name) for name in alerts()}
    for anchor, text in sections.items():
        # A section named like an alert belongs to one; links between sections resolve.
        if re.fullmatch(r"[a-z0-9]+", anchor):
            assert anchor in alert_anchors, f"#{anchor}: no such alert"
        for target in re.findall(r"\]\(#([^)]+)\)", text):
            assert target in sections, f"#{anchor} links to #{target}, which does not exist"
    named = set(re.findall(r"(?:eshop manage|manage\.py) ([a-z_]+)", RUNBOOK.read_text()))
    assert named, "the runbook names no command"
    assert named <= commands, f"no such manage.py command: {named - commands}"


# ------------------------------------------------------------------ compose and k8s


def test_compose_prometheus_loads_the_rules_file_it_mounts(tmp_path: Path) -> None:
    """Lay out the files as the container sees them, then let promtool read the config."""
    prometheus = load_yaml(COMPOSE_FILE)["services"]["prometheus"]
    config_flag = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    mounted = {}
    for volume in prometheus["volumes"]:
        source, _, rest = volume.partition(":")
        if source.startswith("./"):
            target, _, mode = rest.partition(":")
            assert mode == "ro", f"{volume}: mount it read-only"
            mounted[target] = COMPOSE_DIR / source
            (tmp_path / target.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(COMPOSE_DIR / source, tmp_path / target.lstrip("/"))
    config = config_flag.split("=", 1)[1]
    assert mounted[config] == PROMETHEUS_CONFIG
    rule_files = load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    container_paths = [str(Path(config).parent / path) for path in rule_files]
    assert [mounted.get(path) for path in container_paths] == [RULES]
    result = promtool("check", "config", str(tmp_path / config.lstrip("/")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout, result.stdout


def test_the_rules_select_the_scrape_job_and_its_service_label() -> None:
    job = scrape_job()
    assert job["job_name"] == "eshop"
    relabel = [r for r in job["relabel_configs"] if r.get("target_label") == "service"]
    assert relabel == [{"source_labels": ["__meta_dns_name"], "target_label": "service"}]
    names = {name for config in job["dns_sd_configs"] for name in config["names"]}
    assert names == set(SERVICES)
    # ServiceDown must notice each service vanishing, not only the ones named once.
    absent = set(
        re.findall(r'absent\(up\{job="eshop", service="(\w+)"\}\)', alerts()["ServiceDown"]["expr"])
    )
    assert absent == set(SERVICES)


def test_k8s_component_carries_the_same_groups_as_the_rules_file() -> None:
    objects = render_with_component()
    prometheus_rules = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    assert len(prometheus_rules) == 1
    rule = prometheus_rules[0]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "eshop"
    assert rule["spec"]["groups"] == load_yaml(RULES)["groups"], (
        "stale: run python k8s/components/prometheus-rules/generate.py"
    )
    check = run([sys.executable, str(COMPONENT / "generate.py"), "--check"])
    assert check.returncode == 0, check.stdout + check.stderr


def test_k8s_pod_monitor_scrapes_every_web_pod_as_compose_does() -> None:
    objects = render_with_component()
    (monitor,) = [obj for obj in objects if obj["kind"] == "PodMonitor"]
    assert monitor["metadata"]["namespace"] == "eshop"
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = {}
    for deployment in (obj for obj in objects if obj["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if selector.items() <= labels.items():
            selected[deployment["metadata"]["name"]] = deployment
    assert set(selected) == set(SERVICES), "the web Deployments, and only them"
    # job: the value of the pods' jobLabel, as the rules select it.
    job_label = monitor["spec"]["jobLabel"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    relabel = [r for r in endpoint["relabelings"] if r.get("targetLabel") == "service"]
    assert relabel[0]["sourceLabels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
    for name, deployment in selected.items():
        pod = deployment["spec"]["template"]
        assert pod["metadata"]["labels"][job_label] == scrape_job()["job_name"], name
        assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == name
        ports = {port.get("name") for c in pod["spec"]["containers"] for port in c.get("ports", [])}
        assert endpoint["port"] in ports, f"{name} names no port {endpoint['port']}"
