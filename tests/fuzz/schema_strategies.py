"""Hypothesis strategies for tool inputs, driven by the JSON Schemas in schemas/.

Not hypothesis-jsonschema: its last release (0.23.1) calls a Hypothesis internal that Hypothesis 6.170 no
longer has, so it fails on every schema. This is the small part of that idea Butler needs: draw objects
from a schema's properties (mostly within bounds, sometimes just past them), then mutate some of them
into shapes the schema refuses. Whether a drawn value is valid is decided by the schema itself
(jsonschema), not by this module, so the rules (anyOf, not) need no code here.

Strings whose names say what they are (session_id, task_id, paths...) are drawn partly from a pool of
real values, so the fuzzer reaches past "unknown session" into the handlers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

# Path-like text stays inside the working directory: no separators, no "." or ".." alone. A fuzzer that
# names "/" would scan the whole disk; confinement is another rule's business.
_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."
_PATHLIKE = {"prd_path", "paths", "baseline", "since"}
_UNKNOWN = "unexpected_field"


def _deref(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/$defs/"), ref
        node = root["$defs"][ref.removeprefix("#/$defs/")]
    return node


def _int_bounds(node: Mapping[str, Any]) -> tuple[int, int]:
    lo = node.get("minimum", node["exclusiveMinimum"] + 1 if "exclusiveMinimum" in node else -(10**6))
    hi = node.get("maximum", node["exclusiveMaximum"] - 1 if "exclusiveMaximum" in node else 10**12)
    return int(lo), int(hi)


def _text(name: str, node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    lo, hi = node.get("minLength", 0), min(node.get("maxLength", 60), 60)
    if name in _PATHLIKE:
        first = _SAFE.replace("-", "") if name == "since" else _SAFE
        return st.builds(lambda a, b: a + b, st.sampled_from(first), st.text(_SAFE, max_size=max(0, hi - 1))).filter(
            lambda s: s.strip(".") != "")
    if "pattern" in node and node["pattern"] != r"^[^\x00]*$":
        return st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: lo <= len(s) <= node.get("maxLength",
                                                                                                        10**9))
    return st.text(min_size=lo, max_size=max(lo, hi)).filter(lambda s: "\x00" not in s)


def value(node: Mapping[str, Any], root: Mapping[str, Any], pool: Mapping[str, Sequence[Any]],
          name: str = "") -> st.SearchStrategy[Any]:
    """A value the node describes (a schema-invalid one only when the pool offers it)."""
    node = _deref(node, root)
    if "anyOf" in node and "type" not in node and "properties" not in node:
        return st.one_of([value(branch, root, pool, name) for branch in node["anyOf"]])
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    drawn: st.SearchStrategy[Any]
    if kind == "integer":
        lo, hi = _int_bounds(node)
        drawn = st.one_of(st.integers(lo, min(hi, lo + 30_000)), st.integers(lo, hi), st.sampled_from([lo, hi]))
    elif kind == "number":
        lo, hi = float(node.get("minimum", -1e6)), float(node.get("maximum", 1e6))
        drawn = st.one_of(st.floats(lo, hi, allow_nan=False, allow_infinity=False), st.sampled_from([lo, hi]))
    elif kind == "string":
        drawn = _text(name, node)
    elif kind == "boolean":
        drawn = st.booleans()
    elif kind == "null":
        drawn = st.none()
    elif kind == "array":
        item = value(node.get("items", {}), root, pool, name)
        drawn = st.lists(item, max_size=min(node.get("maxItems", 3), 3))
    elif kind == "object":
        drawn = obj(node, root, pool)
    else:
        drawn = st.just({})
    if name in pool and kind in ("string", "array"):
        real = st.sampled_from(list(pool[name]))
        drawn = st.one_of(real, real, drawn)
    return drawn


def obj(node: Mapping[str, Any], root: Mapping[str, Any], pool: Mapping[str, Sequence[Any]]) -> st.SearchStrategy[Any]:
    node = _deref(node, root)
    props = node.get("properties", {})
    required = set(node.get("required", []))
    return st.fixed_dictionaries(
        {k: value(v, root, pool, k) for k, v in props.items() if k in required},
        optional={k: value(v, root, pool, k) for k, v in props.items() if k not in required},
    )


def _wrong(node: Mapping[str, Any], root: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values just past a property's bounds, or of the wrong kind."""
    node = _deref(node, root)
    branches = [b for b in node.get("anyOf", [node]) if b.get("type") != "null"]
    out: list[Any] = [None, "", [], {}, "twelve", -1, 10**19, 1e308, True]
    for b in (_deref(b, root) for b in branches):
        if b.get("type") == "integer":
            lo, hi = _int_bounds(b)
            out += [lo - 1, hi + 1, float(lo) + 0.5]
        if b.get("type") == "number" and "maximum" in b:
            out += [b["maximum"] * 10, -0.01]
        if b.get("type") == "string":
            out += ["x" * (b.get("maxLength", 100_000) + 1), "a\x00b", 7]
    return st.sampled_from(out)


@st.composite
def mutated(draw: st.DrawFn, node: Mapping[str, Any], root: Mapping[str, Any],
            pool: Mapping[str, Sequence[Any]]) -> Any:
    """An object of `node`, changed in one way a schema may refuse: a key dropped, added, or a bad value."""
    props = node.get("properties", {})
    base = dict(draw(obj(node, root, pool)))
    # (MCP arguments are always an object, so a non-object is not a case to draw.)
    how = draw(st.sampled_from(["drop", "extra", "bad", "bad"] if props else ["extra"]))
    if how == "drop" and base:
        base.pop(draw(st.sampled_from(sorted(base))))
    elif how == "extra":
        base[_UNKNOWN] = draw(st.sampled_from([1, "x", None]))
    elif how == "bad":
        key = draw(st.sampled_from(sorted(props)))
        base[key] = draw(_wrong(props[key], root))
    return base


def inputs(schema: Mapping[str, Any], pool: Mapping[str, Sequence[Any]]) -> st.SearchStrategy[Any]:
    """Inputs for a tool: about half drawn to fit, half mutated; the schema decides which are valid."""
    return st.one_of(obj(schema, schema, pool), mutated(schema, schema, pool))
