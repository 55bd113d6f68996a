"""The fast plan equals its definition: `classify`, `priority_of`, `decompose_plain`, `_list_items` and `layers_of`
(issue 12 cut the plan's CPU) against the straightforward versions they replaced, kept here as the reference."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.core.allocation import largest_remainder
from butler_skill.core.decomposition import (
    _CHECKBOX_RE,
    _ITEM_RE,
    _KEYWORD_RE,
    _PRIORITY_MARKERS,
    BASIS_POINTS,
    KEYWORDS,
    STAGE_BASE_TOKENS,
    STAGE_WEIGHTS,
    SubTaskSpec,
    _clauses,
    _dependencies,
    _list_items,
    _title,
    classify,
    decompose,
    decompose_plain,
    layers_of,
    priority_of,
    stages,
)


# ---- the reference: the definitions as they were written before the fast paths -------------------------
def classify_by_definition(text: str) -> str:
    m = _KEYWORD_RE.search(text)
    return "general" if m is None or m.lastgroup is None else m.lastgroup


def priority_by_definition(text: str, default: str = "medium") -> str:
    for level, pattern in _PRIORITY_MARKERS:
        if pattern.search(text):
            return level
    return default


def list_items_by_definition(lines: Sequence[str]) -> tuple[list[str], str]:
    items: list[list[str]] = []
    preamble: list[str] = []
    base_indent: int | None = None
    for line in lines:
        m = _ITEM_RE.match(line)
        indent = len(m.group(1).expandtabs(4)) if m else 0
        if m and (base_indent is None or indent <= base_indent):
            if base_indent is None:
                base_indent = indent
            items.append([_CHECKBOX_RE.sub("", m.group(2).strip(), count=1).strip()])
        elif items:
            extra = line.strip()
            if extra:
                items[-1].append(extra)
        else:
            preamble.append(line)
    return ["\n".join(p for p in parts if p) for parts in items], "\n".join(preamble)


def decompose_by_definition(description: str, name: str = "") -> list[SubTaskSpec]:
    normalised = description.replace("\r\n", "\n").replace("\r", "\n")
    items, preamble = list_items_by_definition(normalised.split("\n"))
    texts = [t for t in items if t.strip()]
    if not texts:
        preamble = ""
        texts = _clauses(normalised)
    if not texts:
        texts = [normalised.strip() or name.strip() or "Complete the task."]
    kinds = [classify_by_definition(t) for t in texts]
    overall = priority_by_definition(f"{name}\n{preamble}")
    total_weight = sum(STAGE_WEIGHTS[k] for k in kinds)  # type: ignore[index]
    weights_bp = largest_remainder(BASIS_POINTS, [Fraction(BASIS_POINTS * STAGE_WEIGHTS[k], total_weight)  # type: ignore[index]
                                                  for k in kinds])
    deps = _dependencies(kinds)  # type: ignore[arg-type]
    ids = [f"st-{i + 1}" for i in range(len(texts))]
    return [
        SubTaskSpec(id=ids[i], title=_title(texts[i]), text=texts[i], kind=kinds[i],  # type: ignore[arg-type]
                    weight_bp=weights_bp[i],
                    estimated_tokens=STAGE_BASE_TOKENS[kinds[i]] + 3 * math.ceil(len(texts[i]) / 4),  # type: ignore[index]
                    priority=priority_by_definition(texts[i], default=overall),  # type: ignore[arg-type]
                    depends_on=tuple(ids[j] for j in deps[i]))
        for i in range(len(texts))
    ]


# ---- inputs: arbitrary text, and text made of the keywords, their look-alikes and the markers ---------------
# Every keyword spelled by hypothesis from its own regex fragment (so not from the speller under test), in any case.
KEYWORD = st.sampled_from([f for frags in KEYWORDS.values() for f in frags]).flatmap(
    lambda f: st.from_regex(f, fullmatch=True)).flatmap(lambda w: st.sampled_from([w, w.upper(), w.title()]))
WORDS = st.one_of(KEYWORD, st.sampled_from(
    ["Look up", "set  up", "roll out", "rollout", "rollouts", "set", "look", "roll", "up", "tests_1", "re-test",
     "p0", "P1", "p3", "urgent!", "nice to have", "nice-to-have", "if time permits", "High priority", "low-priority",
     "must", "the", "data", "and", "then", ",", ".", ";", "\n", "- ", "1. ", "[x] ", "  - ", "\t* ", "é", "ſet up",
     "K", "İ", "ß"]))
texts = st.one_of(st.text(max_size=200), WORDS, st.lists(WORDS, max_size=12).map(" ".join),
                  st.lists(WORDS, max_size=12).map("".join))


@settings(max_examples=1000)
@given(texts)
def test_classify_equals_the_regex_search(text: str) -> None:
    assert classify(text) == classify_by_definition(text)


def test_every_word_the_shortcut_knows_classifies_as_the_regex_does() -> None:
    from butler_skill.core.decomposition import _KEYWORD_WORDS

    for word in sorted(_KEYWORD_WORDS):
        for text in (word, word.upper(), f"Then {word.title()} it", f"x-{word}", f"{word}s up", f"{word} up now"):
            assert classify(text) == classify_by_definition(text), text


@settings(max_examples=500)
@given(KEYWORD, st.sampled_from(["", " the data", "_x", "s", " up", "\tout"]))
def test_any_spelling_of_a_keyword_classifies_as_the_regex_does(word: str, tail: str) -> None:
    assert classify(word + tail) == classify_by_definition(word + tail)


@settings(max_examples=400)
@given(texts, st.sampled_from(["low", "medium", "high", "critical"]))
def test_priority_of_equals_the_three_searches(text: str, default: str) -> None:
    assert priority_of(text, default) == priority_by_definition(text, default)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(st.lists(st.one_of(st.text(max_size=40), st.lists(WORDS, max_size=8).map(" ".join)), max_size=30))
def test_list_items_equals_the_definition(lines: list[str]) -> None:
    assert _list_items(lines) == list_items_by_definition(lines)


@settings(max_examples=300)
@given(st.one_of(texts, st.lists(st.lists(WORDS, max_size=8).map(" ".join), max_size=40).map(
    lambda items: "\n".join(f"- {i}" for i in items))), st.text(max_size=30))
def test_decompose_equals_the_definition(description: str, name: str) -> None:
    expected = decompose_by_definition(description, name)
    assert decompose(description, name) == expected
    assert [SubTaskSpec(**p._asdict()) for p in decompose_plain(description, name)] == expected
    assert [tuple(p) for p in decompose_plain(description, name)] == [
        (s.id, s.title, s.text, s.kind, s.weight_bp, s.estimated_tokens, s.priority, s.depends_on) for s in expected]


@settings(max_examples=300)
@given(st.lists(st.lists(WORDS, max_size=6).map(" ".join), min_size=1, max_size=60))
def test_layers_of_equals_stages(items: list[str]) -> None:
    specs = decompose("\n".join(f"- {i}" for i in items))
    assert layers_of([s.depends_on for s in specs], [s.id for s in specs]) == stages(specs)
