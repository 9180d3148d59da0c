"""Validate a composed config against a pydantic model; every problem becomes one line.

A line names the key, the value given and what is expected, in the style of the hand-written
messages it replaces: ``attack.loss='hinge': expected one of ['ce', 'masked_ce', ...]``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, TypeAdapter, ValidationError

from ..errors import ConfigError
from ..keytypes import KeyLine, as_typed

_MISSING = object()


def _options(ctx_expected: str) -> str:
    """pydantic's "'a', 'b' or 'c'" as "['a', 'b', 'c']" (the style of every choice message)."""
    return "[" + ctx_expected.replace(" or ", ", ") + "]"


# pydantic's bound errors -> (comparison, context key)
_BOUNDS = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
           "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}


def expected_text(error: dict) -> str:
    """What a pydantic error expects, in words (``expected an integer``)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "expected an integer"
    if kind in ("float_type", "float_parsing"):
        return "expected a number"
    if kind == "string_too_short":
        return "expected a non-empty string (or null)"
    if kind == "finite_number":
        return "expected a finite number"
    if kind in ("bool_type", "bool_parsing"):
        return "expected true or false"
    if kind == "string_type":
        return "expected a string"
    if kind in ("list_type", "tuple_type"):
        return "expected a list in brackets, e.g. [a,b]"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "expected a mapping, e.g. {key: value}"
    if kind == "none_required":
        return "expected null"
    if kind == "literal_error":
        return f"expected one of {_options(ctx['expected'])}"
    if kind in _BOUNDS:
        sign, key = _BOUNDS[kind]
        return f"expected {sign} {ctx[key]:g}"
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        return f"expected at {'least' if kind == 'too_short' else 'most'} {n} value{'s' * (n != 1)}"
    if kind == "extra_forbidden":
        return "not a known key (remove it, or declare it in segattack/schema)"
    if kind == "missing":
        return "is required"
    if kind == "union_tag_invalid":
        return f"expected one of [{ctx['expected_tags']}]"
    if kind == "union_tag_not_found":
        return f"needs {ctx['discriminator'].strip(chr(39))} (one of the options)"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    return error["msg"]


def _locate(data, loc, missing: bool = False) -> tuple[str, Any, list[int]]:
    """(dotted key, value at that key, list indices below it) of an error's location in ``data``.

    Parts of ``loc`` that are not in ``data`` (pydantic's union branch tags) are skipped.
    """
    keys, value, items = [], data, []
    for part in loc:
        if isinstance(value, dict) and part in value:
            if items:  # a key inside a list item: name the item
                keys[-1] += "".join(f"[{i}]" for i in items)
                items = []
            keys.append(str(part))
            value = value[part]
        elif isinstance(value, (list, tuple)) and isinstance(part, int) and 0 <= part < len(value):
            items.append(part)
            value = value[part]
        elif missing and isinstance(value, dict) and part == loc[-1]:
            keys.append(part)  # a missing key
            value = _MISSING
    if items:  # report the whole list, say which item is wrong
        return ".".join(keys), _whole(data, keys), items
    return ".".join(keys), value, items


def _whole(data, keys):
    value = data
    for k in keys:
        name, *idx = k.replace("]", "").split("[")
        value = value[name]
        for i in idx:
            value = value[int(i)]
    return value


def error_lines(err: ValidationError, data, prefix: str = "") -> list[str]:
    """One line per key with an error: ``key=value: expected ...``."""
    lines, seen = [], {}
    for error in err.errors(include_url=False):
        key, value, items = _locate(data, error["loc"], error["type"] == "missing")
        key = f"{prefix}.{key}" if prefix and key else (key or prefix)
        if isinstance((error.get("ctx") or {}).get("error"), KeyLine):
            line = f"{key}.{error['ctx']['error']}" if key else str(error["ctx"]["error"])
            if line not in lines:
                lines.append(line)
                seen[line] = None
            continue
        expected = expected_text(error)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            tag = error.get("ctx", {}).get("discriminator", "'type'").strip("'")
            if isinstance(value, dict):
                value = value.get(tag, _MISSING)
            key = f"{key}.{tag}" if key else tag
        if items:
            expected = f"item {items[-1]}: {expected}"
        head = key if value is _MISSING else f"{key}={as_typed(value)}"
        if head in seen:  # several branches of a union failed: one line, the options joined
            if expected not in seen[head]:
                seen[head].append(expected)
            continue
        seen[head] = [expected]
        lines.append(head)
    return [head if seen[head] is None else f"{head} {seen[head][0]}" if seen[head][0] == "is required"
            else f"{head}: " + " or ".join([seen[head][0], *(e.removeprefix("expected ") for e in seen[head][1:])])
            for head in lines]


def config_data(cfg) -> dict:
    """The composed config as plain data (interpolations resolved, Hydra's own node left out)."""
    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    data = {}
    for key in cfg:
        if key == "hydra":
            continue
        try:
            node = cfg._get_node(key)._dereference_node()
            data[key] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node._value()
        except OmegaConfBaseException as err:
            where = getattr(err, "full_key", None) or key
            raise ConfigError(f"{where}: {str(err).splitlines()[0]}") from None
    return data


def validate(schema: type[BaseModel] | TypeAdapter, data, context: dict | None = None,
             prefix: str = ""):
    """``schema`` validated on ``data``; a ``ConfigError`` with one line per bad key otherwise."""
    try:
        if isinstance(schema, TypeAdapter):
            return schema.validate_python(data, context=context)
        return schema.model_validate(data, context=context)
    except ValidationError as err:
        raise ConfigError("\n".join(error_lines(err, data, prefix))) from None
