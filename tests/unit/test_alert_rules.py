"""The example alert rules in config/ (issue 16). ``promtool check rules`` is not installable
from the registries this project may use, so the file is parsed and checked here: the shape
promtool wants, and every metric an expression names is one dropzone exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dropzone.fleet.metrics import Metrics

RULES = Path(__file__).resolve().parents[2] / "config" / "dropzone-alerts.yml"


def exported_names() -> set[str]:
    m = Metrics(hosts=["http://h:11434"], drop_dir=Path("/srv/dropzone"), state=None)
    m.observe({"event": "ollama.version", "host": "http://h:11434", "version": "0.33.0"})
    text = generate_latest(m.registry).decode()
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    # Gauges read from the state store at scrape time (no store here).
    return names | {
        "dropzone_artifacts",
        "dropzone_oldest_waiting_seconds",
        "dropzone_last_import_timestamp_seconds",
    }


def test_the_alert_rules_have_the_shape_promtool_checks() -> None:
    data = yaml.safe_load(RULES.read_text())
    assert set(data) == {"groups"}
    alerts = []
    for group in data["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"])
            assert rule["expr"].count("(") == rule["expr"].count(")")
            assert rule["expr"].count("{") == rule["expr"].count("}")
            alerts.append(rule["alert"])
    assert {"DropzoneImportFailing", "DropzoneHostDown", "DropzoneBacklogGrowing"} <= set(alerts)


def test_every_metric_an_alert_names_is_exported() -> None:
    exported = exported_names()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            names = set(re.findall(r"\bdropzone_[a-z_]+", rule["expr"]))
            assert names <= exported, (rule["alert"], names - exported)
