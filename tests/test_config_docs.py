"""config/README.md documents every config key: every key of the JSON schema, every resource
group, and every parameter of every registered quantization method, distillation method and
calibration selector (a new key or plug-in without documentation fails here)."""

import dataclasses
import json
import re

import pytest

from conftest import REPO

DOC = REPO / "config/README.md"
SCHEMA = REPO / "src/diffcomp/config.schema.json"


def schema_keys(schema: dict) -> list[str]:
    """Dotted keys of every property: ``[]`` after an array of objects, ``<instance>`` /
    ``<rule>`` for the entries of a mapping with free names."""
    defs = schema.get("$defs", {})

    def resolve(node):
        return defs[node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else node

    keys = []

    def walk(node, path):
        node = resolve(node)
        for k, v in node.get("properties", {}).items():
            p = f"{path}.{k}" if path else k
            keys.append(p)
            v = resolve(v)
            walk(v, p)
            if isinstance(v.get("items"), dict):
                walk(v["items"], p + "[]")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{path}.{'<rule>' if path == 'resources' else '<instance>'}")

    walk(schema, "")
    return keys


def code_spans(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def section(text: str, heading: str) -> str:
    """The text under the level-3 heading ``heading`` up to the next heading."""
    m = re.search(rf"^### {re.escape(heading)}\s*$(.*?)(?=^#{{1,3}} |\Z)", text, re.M | re.S)
    assert m, f"config/README.md has no heading '### {heading}'"
    return m.group(1)


def test_schema_walk_finds_nested_array_and_mapping_keys():
    keys = schema_keys(json.loads(SCHEMA.read_text()))
    for k in ["name", "sampler.steps", "quantization.bits[].w", "quantization.methods.<instance>.label",
              "resources.<rule>.gpu", "distillation.feature_net.path", "model.train.lr"]:
        assert k in keys


def test_every_schema_key_is_documented():
    spans = code_spans(DOC.read_text())
    missing = [k for k in schema_keys(json.loads(SCHEMA.read_text())) if k not in spans]
    assert not missing, f"config/README.md does not document: {missing}"


def test_every_resource_group_is_documented():
    schema = json.loads(SCHEMA.read_text())
    groups = schema["properties"]["resources"]["propertyNames"]["enum"]
    text = DOC.read_text().split("## `resources`", 1)[1]
    missing = [g for g in groups if f"`{g}`" not in text]
    assert not missing, f"config/README.md's resources section does not name the groups: {missing}"


def _plugins():
    from diffcomp.calib.selectors import SELECTORS
    from diffcomp.distill.methods import DISTILLERS
    from diffcomp.methods import METHODS

    out = []
    for reg, heading in [(METHODS, "`{}`"), (DISTILLERS, "`{}`"), (SELECTORS, "selector `{}`")]:
        out += [(heading.format(name), reg[name].params) for name in reg.names()]
    return out


@pytest.mark.parametrize("heading,params", _plugins(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_parameter_of_every_registered_plugin_is_documented(heading, params):
    spans = code_spans(section(DOC.read_text(), heading))
    missing = [f.name for f in dataclasses.fields(params) if f.name not in spans]
    assert not missing, f"config/README.md, section '{heading}', does not document: {missing}"
