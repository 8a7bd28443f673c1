"""The workflow JSON Schema: the core schema plus every installed step's options.

``schemas/workflow.schema.json`` (installed as the package ``migflow.schemas``)
is the core schema: it knows the top-level keys, ``[hosts]``, ``[domain]`` and
``[matrix]``, and only requires ``use`` in each ``[[steps]]`` entry.  Editors
that read the ``#:schema`` comment (Taplo, Even Better TOML) use it as is.

:func:`workflow_schema` composes it with what the plugins registered:

* ``backend`` becomes an enum of the registered backends;
* each ``[[steps]]`` entry's ``use`` becomes an enum of the registered steps;
* for each step ``X``, ``if {use: const X} then <X's options_schema + use>``, each
  option value, at any depth, also accepting a ``${param}`` reference (the value is only
  known per scenario; the loader checks the resolved value).

``migflow schema`` prints this composed schema for editors that want step
options completed too.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

__all__ = ["SCHEMA_ID", "core_schema", "step_schema_for_editor", "workflow_schema"]

SCHEMA_ID = "urn:migflow:schemas:workflow"
_PARAM_REF = {"$ref": "#/$defs/parameter"}


@lru_cache(maxsize=1)
def _core_text() -> str:
    try:
        import importlib.resources as resources

        return (resources.files("migflow.schemas") / "workflow.schema.json").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        # A source checkout that is not installed: schemas/ next to src/.
        here = Path(__file__).resolve().parents[3] / "schemas" / "workflow.schema.json"
        return here.read_text(encoding="utf-8")


def core_schema() -> dict:
    """A fresh copy of the core schema (``schemas/workflow.schema.json``)."""
    return json.loads(_core_text())


def step_schema_for_editor(name: str, options_schema: dict) -> dict:
    """``options_schema`` adapted to a ``[[steps]]`` entry: ``use`` allowed, ``${param}`` accepted.

    The step's schema becomes its own resource (``$id``) so its internal
    ``#/$defs/...`` references keep working once embedded.
    """
    s = copy.deepcopy(options_schema) if isinstance(options_schema, dict) else {}
    s.setdefault("type", "object")
    s["$id"] = f"urn:migflow:schemas:step:{name}"
    _accept_parameters(s)
    props = s.get("properties")
    if not isinstance(props, dict):
        props = s["properties"] = {}
    props["use"] = {"const": name, "description": s.get("description") or s.get("title") or f"the step {name!r}"}
    return s


def _or_parameter(sub):
    if not isinstance(sub, dict):
        return sub
    _accept_parameters(sub)
    return {"anyOf": [sub, {"$ref": f"{SCHEMA_ID}#/$defs/parameter"}]}


def _accept_parameters(schema: dict) -> None:
    """Let every value described by ``schema`` (properties, items, at any depth) be a ``${param}``."""
    for key in ("properties", "patternProperties", "$defs"):
        table = schema.get(key)
        if isinstance(table, dict):
            for name, sub in list(table.items()):
                if key == "$defs":
                    _accept_parameters(sub)
                else:
                    table[name] = _or_parameter(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = _or_parameter(schema[key])
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key) or []:
            if isinstance(sub, dict):
                _accept_parameters(sub)


def workflow_schema(plugins) -> dict:
    """The core schema composed with every registered step, backend and their names.

    :param plugins: a :class:`migflow.plugins.Plugins`.
    """
    schema = core_schema()
    backends = sorted(plugins.backends)
    if backends:
        schema["properties"]["backend"]["enum"] = backends
        schema["properties"]["backend"]["description"] += " Installed: " + ", ".join(backends) + "."
    step = schema["$defs"]["step"]
    names = sorted(plugins.steps)
    if names:
        step["properties"]["use"]["enum"] = names
        step["properties"]["use"]["description"] = "Installed steps: " + ", ".join(
            f"{n} ({plugins.steps[n].description})" if plugins.steps[n].description else n for n in names
        )
    rules = []
    for n in names:
        spec = plugins.steps[n]
        sub = step_schema_for_editor(n, spec.options_schema)
        if spec.description and "description" not in sub:
            sub["description"] = spec.description
        rules.append({"if": {"properties": {"use": {"const": n}}, "required": ["use"]}, "then": sub})
    if rules:
        step["allOf"] = rules
    return schema
