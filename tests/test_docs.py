"""The KPI reference page says what the registry computes."""

from pathlib import Path

from kpi_lib.metrics.registry import REGISTRY, registry_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "kpis.md"


def test_kpi_page_holds_the_registry_reference_as_generated():
    assert registry_markdown() in DOC.read_text(), "docs/kpis.md is stale: run `make docs`"


def test_every_kpi_has_a_label_a_definition_and_a_formula():
    for kpi in REGISTRY.values():
        assert kpi.label and kpi.definition.endswith(".") and kpi.formula, kpi.name
