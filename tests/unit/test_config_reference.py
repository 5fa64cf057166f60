"""docs/configuration.md is what the configuration models say (regenerate with
`.venv/bin/clever-gateway config-reference > docs/configuration.md`)."""

from __future__ import annotations

from pathlib import Path

from gateway.config import Settings
from gateway.config_reference import config_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_reference_is_generated_from_the_models() -> None:
    assert DOC.read_text() == config_reference(), (
        "docs/configuration.md is stale: run `.venv/bin/clever-gateway config-reference > docs/configuration.md`")


def test_every_key_of_every_section_is_documented_with_its_meaning() -> None:
    text = config_reference()
    for name, field in Settings.model_fields.items():
        assert f"| `{field.alias or name}` |" in text
    undocumented = [line for line in text.splitlines() if line.startswith("| `") and line.rstrip().endswith("|  |")]
    assert not undocumented, undocumented
