"""JSON Schema errors in plain English: what was expected where, and what was found.

jsonschema's own messages name Python types and regular expressions; a
workflow author wants "expected an integer from 1 to 1000, got 'two'" and a
did-you-mean for a misspelled key.  :func:`translate` turns one
:class:`~jsonschema.exceptions.ValidationError` into such messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from .suggest import did_you_mean

__all__ = ["Validator", "got", "is_integer", "make_validator", "non_finite", "quote_list", "translate"]


def is_integer(checker, instance) -> bool:  # 2.0 is a float in TOML, and true is no integer
    return isinstance(instance, int) and not isinstance(instance, bool)


Validator = validators.extend(Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", is_integer))


def make_validator(schema: dict) -> Any:
    return Validator(schema)


def non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "a table",
    "null": "nothing",
}
_PATTERN_WORDS = {
    "^[a-z0-9_-]+$": "lower-case letters, digits, '_' or '-'",
    "^[A-Za-z_][A-Za-z0-9_-]*$": "letters, digits, '_' or '-', not starting with a digit or '-'",
    "^[A-Za-z][A-Za-z0-9+.-]*:": "a libvirt URI such as qemu+tcp://HOST/system",
}


def got(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return f"a list of {len(value)}" if value else "an empty list"
    if isinstance(value, dict):
        return "a table"
    return f"{type(value).__name__} {value}"  # TOML dates and times


def quote_list(values: Iterable, limit: int = 12) -> str:
    values = list(values)
    text = ", ".join(repr(v) if isinstance(v, str) else got(v) for v in values[:limit])
    return text + (", ..." if len(values) > limit else "")


def _expected(schema: dict) -> str:
    t = schema.get("type")
    types = t if isinstance(t, list) else [t] if t else []
    words = " or ".join(_TYPE_WORDS.get(x, str(x)) for x in types) or "a value"
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and hi is not None:
        return f"{words} from {lo} to {hi}"
    if lo is not None:
        return f"{words} ≥ {lo}"
    if hi is not None:
        return f"{words} ≤ {hi}"
    if "enum" in schema:
        return "one of " + quote_list(schema["enum"])
    return words


def _is_param_branch(schema: Any) -> bool:
    return isinstance(schema, dict) and str(schema.get("$ref", "")).endswith("#/$defs/parameter")


def _known_keys(schema: dict) -> list[str]:
    return [k for k in (schema.get("properties") or {}) if k != "use"]


def translate(error: ValidationError, *, prefix: list | None = None, noun: str = "key", owner: str = "") -> list[tuple[list, str]]:
    """One jsonschema error -> ``[(path, message)]`` saying what is expected.

    :param prefix: prepended to the error's path (for a step's options).
    :param noun: what an unknown property is called (``key``, ``option``).
    :param owner: appended after the unknown name (`` of step 'migrate'``).
    """
    prefix = list(prefix or [])
    path = prefix + list(error.absolute_path)
    kw, schema = error.validator, error.schema if isinstance(error.schema, dict) else {}
    inst: Any = error.instance
    value: Any = error.validator_value
    if non_finite(inst):
        return []  # already reported once by check_finite, wherever it is used

    if kw in ("anyOf", "oneOf"):
        branches = value
        if all(isinstance(b, dict) and list(b) == ["required"] and len(b["required"]) == 1 for b in branches):
            keys = [b["required"][0] for b in branches]
            present = [k for k in keys if isinstance(inst, dict) and k in inst]
            alternatives = ", ".join(keys[:-1]) + " or " + keys[-1]
            if not present:
                return [(path, f"expected one of {alternatives}; got none of them")]
            if len(present) > 1:
                return [(path, f"expected exactly one of {alternatives}; got {' and '.join(present)}")]
        context = [e for e in (error.context or []) if not _is_param_branch(branches[e.relative_schema_path[0]])]
        if context:
            return translate(best_match(context), prefix=prefix, noun=noun, owner=owner)
        return [(path, error.message)]

    if kw in ("additionalProperties", "unevaluatedProperties") and isinstance(inst, dict):
        known = _known_keys(schema)
        patterns = list((schema.get("patternProperties") or {}).keys())
        extras = [k for k in inst if k not in (schema.get("properties") or {}) and not any(re.search(p, k) for p in patterns)]
        if not extras:
            return [(path, error.message)]
        out = []
        for k in extras:
            hint = did_you_mean(k, known)
            if not hint:
                hint = f" (expected one of: {', '.join(known)})" if known else " (none are allowed here)"
            out.append((path + [k], f"unknown {noun} {k!r}{owner}{hint}"))
        return out

    if "propertyNames" in error.relative_schema_path or "propertyNames" in error.schema_path:
        pattern = schema.get("pattern")
        words = _PATTERN_WORDS.get(pattern, f"a name matching {pattern}") if pattern else "a valid name"
        return [(path + [inst], f"{inst!r} is not a valid name here: expected {words}")]

    if kw == "required":
        missing = [k for k in value if isinstance(inst, dict) and k not in inst]
        out = []
        for k in missing:
            title = ((schema.get("properties") or {}).get(k) or {}).get("title")
            out.append((path, f"missing required key {k!r}" + (f" ({title})" if title else "")))
        return out or [(path, error.message)]
    if kw == "type":
        return [(path, f"expected {_expected(schema)}, got {got(inst)}")]
    if kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sign = {"minimum": "≥", "maximum": "≤", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kw]
        t = schema.get("type")
        words = _TYPE_WORDS.get(t, "a number") if isinstance(t, str) else "a number"
        return [(path, f"expected {words} {sign} {value}, got {got(inst)}")]
    if kw == "enum":
        return [(path, f"{got(inst)} is not one of {quote_list(value)}{did_you_mean(inst, map(str, value))}")]
    if kw == "const":
        return [(path, f"expected {got(value)}, got {got(inst)}")]
    if kw == "pattern":
        words = _PATTERN_WORDS.get(value, f"a string matching {value}")
        return [(path, f"expected {words}, got {got(inst)}")]
    if kw == "minItems":
        n = value
        return [(path, "expected a non-empty list" if n == 1 else f"expected at least {n} items, got {len(inst)}")]
    if kw == "maxItems":
        return [(path, f"expected at most {value} items, got {len(inst)}")]
    if kw == "minLength":
        n = value
        return [(path, "expected a non-empty string" if n == 1 else f"expected at least {n} characters, got {got(inst)}")]
    if kw == "maxLength":
        return [(path, f"expected at most {value} characters, got {len(inst)}")]
    if kw == "minProperties":
        n = value
        return [(path, "expected a non-empty table" if n == 1 else f"expected at least {n} keys")]
    if kw == "uniqueItems":
        return [(path, "expected no duplicate items")]
    return [(path, error.message)]
