"""The event schemas in docs/events are the ones the code generates, and each one is usable."""
import json

from shared.contracts.webhooks import DOCS, EVENTS, REPLIES, schema_files


def test_docs_match_the_models():
    files = schema_files()
    on_disk = {p.name: p.read_text() for p in DOCS.glob("*.schema.json")}
    assert on_disk == files, "run: python -m shared.contracts.webhooks"


def test_every_type_is_documented_with_its_version():
    names = set(schema_files())
    for model in [*EVENTS.values(), *REPLIES.values()]:
        assert f"{model.event_type}.v{model.version}.schema.json" in names
        schema = json.loads(schema_files()[f"{model.event_type}.v{model.version}.schema.json"])
        assert schema["properties"]["type"] == {"const": model.event_type}
