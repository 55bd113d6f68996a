"""Decomposition: examples of each splitting rule, and properties over arbitrary text and bullet lists."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.core.decomposition import (
    BASIS_POINTS,
    STAGE_BASE_TOKENS,
    STAGE_KINDS,
    STAGE_RANK,
    SubTaskSpec,
    classify,
    decompose,
    estimate_subtask_tokens,
    priority_of,
    stages,
)
from butler_skill.errors import InvalidInput


def kinds(subtasks: list[SubTaskSpec]) -> list[str]:
    return [s.kind for s in subtasks]


# ----------------------------------------------------------------------------------------------- examples


def test_the_originals_example_splits_into_analysis_then_writing() -> None:
    subtasks = decompose("Analyze sales data and write report")
    assert [s.text for s in subtasks] == ["Analyze sales data", "write report"]
    assert kinds(subtasks) == ["analyze", "write"]
    assert [s.id for s in subtasks] == ["st-1", "st-2"]
    assert subtasks[1].depends_on == ("st-1",)
    # stage weights 40 : 30 -> 4/7 and 3/7 of 10,000 basis points, largest remainder
    assert [s.weight_bp for s in subtasks] == [5714, 4286]
    assert subtasks[1].title == "Write report"


def test_research_analyze_write_gets_the_documented_30_40_30() -> None:
    subtasks = decompose("Research the market, analyze the competitors, then write a summary.")
    assert kinds(subtasks) == ["gather", "analyze", "write"]
    assert [s.weight_bp for s in subtasks] == [3000, 4000, 3000]
    assert [s.weight for s in subtasks] == [0.3, 0.4, 0.3]
    assert sum(s.weight_fraction for s in subtasks) == 1
    assert [s.depends_on for s in subtasks] == [(), ("st-1",), ("st-2",)]
    assert stages(subtasks) == [["st-1"], ["st-2"], ["st-3"]]


def test_clause_boundaries_and_connectors() -> None:
    text = "Collect the logs; clean them. After that, analyse error rates and then document the findings"
    subtasks = decompose(text)
    assert [s.text for s in subtasks] == [
        "Collect the logs", "clean them", "analyse error rates", "document the findings",
    ]
    assert kinds(subtasks) == ["gather", "process", "analyze", "write"]


def test_a_lone_verb_stays_with_what_follows() -> None:
    subtasks = decompose("Collect and clean the data, then analyze it")
    assert [s.text for s in subtasks] == ["Collect and clean the data", "analyze it"]


def test_bullet_list_with_preamble_checkbox_continuation_and_nesting() -> None:
    text = (
        "Plan for Q3 (urgent):\n"
        "1. Research the three competitors\n"
        "   focus on pricing pages\n"
        "2. Analyze their pricing\n"
        "   - per seat\n"
        "   - per usage\n"
        "\n"
        "3) [x] Write the comparison\n"
        "- Review it, optional\n"
    )
    subtasks = decompose(text)
    assert [s.text for s in subtasks] == [
        "Research the three competitors\nfocus on pricing pages",
        "Analyze their pricing\n- per seat\n- per usage",
        "Write the comparison",
        "Review it, optional",
    ]
    assert kinds(subtasks) == ["gather", "analyze", "write", "review"]
    # "urgent" in the preamble is every sub-task's default; "optional" in the item wins for that item
    assert [s.priority for s in subtasks] == ["critical", "critical", "critical", "low"]


def test_same_stage_runs_in_parallel_and_analysis_waits_for_all_gathering() -> None:
    subtasks = decompose("- Research vendor A\n- Research vendor B\n- Compare both\n- Summarize the result")
    assert kinds(subtasks) == ["gather", "gather", "analyze", "write"]
    assert subtasks[0].depends_on == () and subtasks[1].depends_on == ()
    assert subtasks[2].depends_on == ("st-1", "st-2")
    assert subtasks[3].depends_on == ("st-3",)
    assert stages(subtasks) == [["st-1", "st-2"], ["st-3"], ["st-4"]]


def test_writing_also_waits_for_gathering_no_analysis_consumed() -> None:
    subtasks = decompose("Research A. Analyze A. Research B. Write the report. Finally, verify everything.")
    assert kinds(subtasks) == ["gather", "analyze", "gather", "write", "review"]
    assert subtasks[3].depends_on == ("st-2", "st-3")  # the sinks, not st-1 again
    assert subtasks[4].depends_on == ("st-4",)
    assert stages(subtasks) == [["st-1", "st-3"], ["st-2"], ["st-4"], ["st-5"]]


def test_validation_review_and_deploy_wait_for_what_they_check() -> None:
    subtasks = decompose("1. Design the API\n2. Implement it\n3. Test the endpoints\n4. Deploy to staging")
    assert kinds(subtasks) == ["design", "build", "review", "deploy"]
    assert [s.depends_on for s in subtasks] == [(), ("st-1",), ("st-2",), ("st-3",)]


def test_text_without_keywords_is_one_parallel_general_stage() -> None:
    subtasks = decompose("Foo the bar. Baz the qux.")
    assert kinds(subtasks) == ["general", "general"]
    assert all(s.depends_on == () for s in subtasks)
    assert [s.weight_bp for s in subtasks] == [5000, 5000]


@pytest.mark.parametrize("text", ["", "   \n\t ", "...;;;", "-", "1."])
def test_nothing_usable_still_gives_one_subtask(text: str) -> None:
    subtasks = decompose(text, name="Quarterly report")
    assert len(subtasks) == 1
    assert subtasks[0].weight_bp == BASIS_POINTS
    assert subtasks[0].depends_on == ()


def test_empty_description_uses_the_name() -> None:
    (only,) = decompose("", name="Write the launch post")
    assert only.text == "Write the launch post" and only.kind == "write"
    (generic,) = decompose("")
    assert generic.text == "Complete the task." and generic.kind == "general"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fix the login bug", "medium"),
        ("URGENT: fix the login bug", "critical"),
        ("this is a blocker", "critical"),
        ("you must fix it", "high"),
        ("important: fix it", "high"),
        ("optional: polish the css", "low"),
        ("nice to have: dark mode", "low"),
        ("must do, though optional otherwise", "high"),
        ("mustard is not must", "high"),
        ("mustard only", "medium"),
    ],
)
def test_priority_markers(text: str, expected: str) -> None:
    assert priority_of(text) == expected


def test_name_sets_the_default_priority() -> None:
    subtasks = decompose("Research A and write B", name="critical launch")
    assert [s.priority for s in subtasks] == ["critical", "critical"]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("gather requirements", "gather"),
        ("Extract the tables", "gather"),
        ("transform rows", "process"),
        ("analysing churn", "analyze"),
        ("Analyzed data", "analyze"),
        ("design the schema", "design"),
        ("build the CLI", "build"),
        ("Summarise the thread", "write"),
        ("validate the totals", "review"),
        ("deploy it", "deploy"),
        ("testament of time", "general"),  # whole words only
        ("hello", "general"),
    ],
)
def test_classify(text: str, kind: str) -> None:
    assert classify(text) == kind


def test_estimate_is_base_plus_three_times_the_text_tokens() -> None:
    assert estimate_subtask_tokens("", "gather") == STAGE_BASE_TOKENS["gather"]
    assert estimate_subtask_tokens("x" * 8, "analyze") == 4_000 + 3 * 2
    assert estimate_subtask_tokens("x" * 9, "analyze") == 4_000 + 3 * 3


@given(st.text(max_size=300), st.text(max_size=300), st.sampled_from(STAGE_KINDS))
def test_estimate_is_monotone_in_length(a: str, b: str, kind: str) -> None:
    short, long = sorted((a, b), key=len)
    assert estimate_subtask_tokens(short, kind) <= estimate_subtask_tokens(long, kind)  # type: ignore[arg-type]


def test_stages_rejects_unknown_ids_cycles_and_duplicates() -> None:
    def spec(i: str, deps: tuple[str, ...] = ()) -> SubTaskSpec:
        return SubTaskSpec(id=i, title=i, text=i, kind="general", weight_bp=0, estimated_tokens=1, depends_on=deps)

    with pytest.raises(InvalidInput):
        stages([spec("a", ("zz",))])
    with pytest.raises(InvalidInput):
        stages([spec("a", ("b",)), spec("b", ("a",))])
    with pytest.raises(InvalidInput):
        stages([spec("a"), spec("a")])
    # a later id may be depended on when given explicitly; layers still come out right
    assert stages([spec("a", ("b",)), spec("b")]) == [["b"], ["a"]]


def test_specs_serialise_with_the_float_weight() -> None:
    (first, _) = decompose("Research A and write B")
    dumped = first.model_dump()
    assert dumped["weight"] == pytest.approx(0.5) and dumped["weight_bp"] == 5000
    assert dumped["depends_on"] == ()


# --------------------------------------------------------------------------------------------- properties


def check_invariants(subtasks: list[SubTaskSpec]) -> None:
    assert len(subtasks) >= 1
    assert [s.id for s in subtasks] == [f"st-{i + 1}" for i in range(len(subtasks))]
    assert sum(s.weight_bp for s in subtasks) == BASIS_POINTS
    assert sum(s.weight_fraction for s in subtasks) == 1
    position = {s.id: i for i, s in enumerate(subtasks)}
    for i, s in enumerate(subtasks):
        assert s.text.strip()
        assert s.estimated_tokens >= STAGE_BASE_TOKENS[s.kind]
        assert len(set(s.depends_on)) == len(s.depends_on)
        for dep in s.depends_on:
            assert position[dep] < i  # only earlier sub-tasks: acyclic by construction
            # same stage never waits on itself: dependencies come from strictly earlier stages
            assert STAGE_RANK[subtasks[position[dep]].kind] < STAGE_RANK[s.kind]
    layers = stages(subtasks)
    flat = [sid for layer in layers for sid in layer]
    assert sorted(flat, key=position.__getitem__) == [s.id for s in subtasks]
    layer_of = {sid: k for k, layer in enumerate(layers) for sid in layer}
    for s in subtasks:
        assert all(layer_of[d] < layer_of[s.id] for d in s.depends_on)


@settings(max_examples=300)
@given(st.text(max_size=400))
def test_any_text_gives_a_valid_deterministic_plan(text: str) -> None:
    first = decompose(text)
    check_invariants(first)
    assert decompose(text) == first


WORDS = st.sampled_from(
    ["research", "the", "data", "analyze", "write", "report", "and", "then", "clean", "deploy", "test", ",",
     ".", ";", "urgent", "x", "review", "build", "design", "1.", "-", "\n", "collect"]
)


@settings(max_examples=200)
@given(st.lists(WORDS, max_size=60))
def test_keyword_heavy_text_gives_a_valid_plan(words: list[str]) -> None:
    check_invariants(decompose(" ".join(words)))


LINE_BREAKS = "\n\r"
item_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=LINE_BREAKS), min_size=1, max_size=60
).filter(lambda s: s.strip() != "" and not re.match(r"\[[ xX]\]", s.strip()))
markers = st.sampled_from(["-", "*", "+", "•", "1.", "7)", "12."])


@settings(max_examples=200)
@given(st.lists(st.tuples(markers, item_text), min_size=1, max_size=25), st.sampled_from(["\n", "\r\n"]))
def test_a_bullet_list_of_n_items_gives_n_subtasks_in_order(items: list[tuple[str, str]], newline: str) -> None:
    text = newline.join(f"{marker} {body}" for marker, body in items)
    subtasks = decompose(text)
    assert [s.text for s in subtasks] == [body.strip() for _, body in items]
    check_invariants(subtasks)


def test_weights_favour_analysis_over_review() -> None:
    subtasks = decompose("- analyze churn\n- review the churn analysis")
    assert subtasks[0].weight_bp > subtasks[1].weight_bp


@given(st.lists(st.sampled_from(["pending", "success", "failed", "running"]), min_size=1, max_size=8), st.data())
def test_ready_after_only_names_unblocked_pending_dependants(statuses: list[str], data: st.DataObject) -> None:
    from butler_skill.core.decomposition import ready_after

    ids = [f"st-{i + 1}" for i in range(len(statuses))]
    deps = {sid: tuple(data.draw(st.lists(st.sampled_from(ids[:i]), unique=True)) if i else ())
            for i, sid in enumerate(ids)}
    finished = data.draw(st.sampled_from(ids))
    status = dict(zip(ids, statuses, strict=True))
    for sid in ready_after(finished, deps, status):
        assert status[sid] == "pending" and finished in deps[sid]
        assert all(status[d] == "success" for d in deps[sid])


def _sinks_by_definition(kinds: list[str]) -> list[tuple[int, ...]]:
    """The rule as the module docstring states it, computed the slow way (every earlier pair checked)."""
    from butler_skill.core.decomposition import STAGE_RANK

    deps: list[tuple[int, ...]] = []
    ancestors: list[set[int]] = []
    for i, kind in enumerate(kinds):
        candidates = [j for j in range(i) if STAGE_RANK[kinds[j]] < STAGE_RANK[kind]]  # type: ignore[index]
        covered = set().union(*(ancestors[j] for j in candidates)) if candidates else set()
        chosen = tuple(j for j in candidates if j not in covered)
        deps.append(chosen)
        ancestors.append(set(chosen).union(*(ancestors[j] for j in chosen)) if chosen else set())
    return deps


@given(st.lists(st.sampled_from(list(STAGE_KINDS)), max_size=60))
def test_linear_dependency_finding_matches_the_definition(kinds: list[str]) -> None:
    from butler_skill.core.decomposition import _dependencies

    assert _dependencies(kinds) == _sinks_by_definition(kinds)  # type: ignore[arg-type]
