"""Split a task description into sub-tasks with stages, weights, estimates, priorities and dependencies.

Pure: no I/O, no clock, no environment, no randomness. The same text always gives the same sub-tasks.

How the text is split
---------------------
1. **List mode.** If any line is a list item (``-``, ``*``, ``+``, ``•`` or ``1.`` / ``1)`` followed by a
   space), each item becomes one sub-task, in order. A leading checkbox (``[ ]``, ``[x]``) is dropped. Lines
   after an item that are not items themselves (continuations, or items indented deeper than the first item)
   are appended to that item's text. Lines before the first item are a preamble and not a sub-task (the
   caller still has the whole description). Items with no text are skipped.
2. **Clause mode** (no list, or a list whose items were all empty). The text splits at sentence ends, line
   breaks, ``;``, and sequencing connectors (``, then``, ``and then``, ``then``, ``after that``,
   ``afterwards``, ``finally``, ``next,``), and then at ``,`` / ``and`` right before an action keyword
   ("analyze sales data and write a report" → two sub-tasks). A piece that would be a lone verb
   ("collect and clean the data") stays joined to what follows.
3. **Fallback.** Text with nothing usable gives one ``general`` sub-task carrying the whole text (or the
   task ``name``, or a generic instruction): there is always at least one sub-task.

Kinds, stage order and dependencies
-----------------------------------
A sub-task's kind is the stage of the first action keyword in its text (``KEYWORDS``), else ``general``.
Stages have a rank (``STAGE_RANK``): gather 0 → process 1 → analyze 2 → design 3 → build/general 4 →
write 5 → review 6 → deploy 7. A sub-task depends on the *sinks* of the earlier sub-tasks of lower rank:
the earlier lower-ranked sub-tasks that no other such sub-task already depends on (directly or not). So
analysis waits for the gathering before it, writing for the analysis (and for any gathering the analysis
did not consume), review and deploy for what came before them. Sub-tasks of the same rank never depend on
each other: they run in parallel. Dependencies only point to earlier sub-tasks, so the graph is acyclic by
construction. ``general`` shares rank 4 with ``build`` ("do the work"). A lower-ranked sub-task listed after
a higher-ranked one (e.g. "write the summary" after "review the code") does not wait for it; list the order
explicitly in the host if that matters.

Weights
-------
Each stage has a relative weight (``STAGE_WEIGHTS``; the original product's example was research 30%,
analyze 40%, write 30%). A sub-task's weight is its stage weight normalised over all sub-tasks, held as
integer basis points (``weight_bp``, 10,000 = 100%) apportioned by largest remainder so they sum to exactly
10,000; ``weight`` is the same number as a float for display, ``weight_fraction`` as an exact Fraction.

Token estimate (local, deliberately simple)
-------------------------------------------
``estimated_tokens = STAGE_BASE_TOKENS[kind] + 3 * ceil(len(text) / 4)``: a per-stage base (what such a
step usually costs) plus about three times the instruction's own tokens (the prompt itself plus an answer
about twice its size). Monotone non-decreasing in the text length for a fixed kind. The lead's estimator for
whole PRDs lives in ``core/estimate.py``; this one only has to rank sub-tasks against each other.

Priority
--------
``medium`` unless the sub-task's text (or, failing that, the task name or a list's preamble) has a marker word
(whole words, case-insensitive): ``critical``, ``urgent``, ``asap``, ``blocker``, ``p0`` → critical;
``must``, ``important``, ``high priority``, ``required``, ``p1`` → high; ``optional``, ``nice to have``,
``if time permits``, ``low priority``, ``p3`` → low. The highest raising marker wins; ``low`` applies only
when no raising marker is present.
"""

from __future__ import annotations

import bisect
import heapq
import math
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Literal, NamedTuple, get_args

from pydantic import BaseModel, ConfigDict, Field, computed_field

from butler_skill.core.allocation import Priority, largest_remainder_int
from butler_skill.errors import InvalidInput

__all__ = [
    "KEYWORDS",
    "STAGE_BASE_TOKENS",
    "STAGE_KINDS",
    "STAGE_RANK",
    "STAGE_WEIGHTS",
    "StageKind",
    "SubTaskPlan",
    "SubTaskSpec",
    "classify",
    "decompose",
    "decompose_plain",
    "estimate_subtask_tokens",
    "layers_of",
    "priority_of",
    "stages",
]

StageKind = Literal["gather", "process", "analyze", "design", "build", "write", "review", "deploy", "general"]
STAGE_KINDS: tuple[StageKind, ...] = get_args(StageKind)

STAGE_RANK: Mapping[StageKind, int] = {
    "gather": 0,
    "process": 1,
    "analyze": 2,
    "design": 3,
    "build": 4,
    "general": 4,
    "write": 5,
    "review": 6,
    "deploy": 7,
}

# Relative stage weights (percent-like). research 30 / analyze 40 / write 30 is the original's example.
STAGE_WEIGHTS: Mapping[StageKind, int] = {
    "gather": 30,
    "process": 20,
    "analyze": 40,
    "design": 25,
    "build": 40,
    "general": 25,
    "write": 30,
    "review": 15,
    "deploy": 10,
}

STAGE_BASE_TOKENS: Mapping[StageKind, int] = {
    "gather": 3_000,
    "process": 2_000,
    "analyze": 4_000,
    "design": 2_500,
    "build": 4_000,
    "general": 2_500,
    "write": 3_000,
    "review": 1_500,
    "deploy": 1_000,
}

BASIS_POINTS = 10_000

# Action keywords per stage. Each entry is a regex fragment matched as a whole word (inflections listed).
KEYWORDS: Mapping[StageKind, tuple[str, ...]] = {
    "gather": (
        r"research(?:es|ed|ing)?", r"gather(?:s|ed|ing)?", r"collect(?:s|ed|ing)?", r"fetch(?:es|ed|ing)?",
        r"scrap(?:e|es|ed|ing)", r"crawl(?:s|ed|ing)?", r"survey(?:s|ed|ing)?", r"investigat(?:e|es|ed|ing)",
        r"explor(?:e|es|ed|ing)", r"download(?:s|ed|ing)?", r"extract(?:s|ed|ing)?", r"find(?:s|ing)?",
        r"search(?:es|ed|ing)?", r"look\s+up",
    ),
    "process": (
        r"clean(?:s|ed|ing)?", r"transform(?:s|ed|ing)?", r"load(?:s|ed|ing)?", r"process(?:es|ed|ing)?",
        r"pars(?:e|es|ed|ing)", r"normali[sz](?:e|es|ed|ing)", r"convert(?:s|ed|ing)?",
        r"prepar(?:e|es|ed|ing)", r"preprocess(?:es|ed|ing)?", r"merg(?:e|es|ed|ing)",
        r"filter(?:s|ed|ing)?", r"import(?:s|ed|ing)?", r"dedup(?:e|licate)?",
    ),
    "analyze": (
        r"analy[sz](?:e|es|ed|ing|is)", r"evaluat(?:e|es|ed|ing)", r"compar(?:e|es|ed|ing)",
        r"assess(?:es|ed|ing)?", r"measur(?:e|es|ed|ing)", r"calculat(?:e|es|ed|ing)",
        r"comput(?:e|es|ed|ing)", r"forecast(?:s|ed|ing)?", r"benchmark(?:s|ed|ing)?",
        r"estimat(?:e|es|ed|ing)", r"interpret(?:s|ed|ing)?",
    ),
    "design": (
        r"design(?:s|ed|ing)?", r"plan(?:s|ned|ning)?", r"architect(?:s|ed|ing)?", r"outlin(?:e|es|ed|ing)",
        r"specif(?:y|ies|ied|ying)", r"sketch(?:es|ed|ing)?", r"prototyp(?:e|es|ed|ing)",
    ),
    "build": (
        r"implement(?:s|ed|ing)?", r"build(?:s|ing)?", r"develop(?:s|ed|ing)?", r"cod(?:e|es|ed|ing)",
        r"creat(?:e|es|ed|ing)", r"refactor(?:s|ed|ing)?", r"fix(?:es|ed|ing)?", r"integrat(?:e|es|ed|ing)",
        r"program(?:s|med|ming)?", r"configur(?:e|es|ed|ing)", r"set\s+up", r"install(?:s|ed|ing)?",
        r"migrat(?:e|es|ed|ing)",
    ),
    "write": (
        r"writ(?:e|es|ing)", r"written", r"document(?:s|ed|ing)?", r"summari[sz](?:e|es|ed|ing)",
        r"draft(?:s|ed|ing)?", r"report(?:s|ed|ing)?", r"compos(?:e|es|ed|ing)", r"describ(?:e|es|ed|ing)",
        r"explain(?:s|ed|ing)?", r"present(?:s|ed|ing)?", r"translat(?:e|es|ed|ing)",
    ),
    "review": (
        r"test(?:s|ed|ing)?", r"review(?:s|ed|ing)?", r"validat(?:e|es|ed|ing)", r"verif(?:y|ies|ied|ying)",
        r"check(?:s|ed|ing)?", r"audit(?:s|ed|ing)?", r"proofread(?:s|ing)?", r"inspect(?:s|ed|ing)?",
        r"qa", r"critique", r"confirm(?:s|ed|ing)?",
    ),
    "deploy": (
        r"deploy(?:s|ed|ing)?", r"releas(?:e|es|ed|ing)", r"ship(?:s|ped|ping)?", r"publish(?:es|ed|ing)?",
        r"launch(?:es|ed|ing)?", r"roll\s*out", r"deliver(?:s|ed|ing)?",
    ),
}

_KIND_GROUPS = [(kind, "|".join(frags)) for kind, frags in KEYWORDS.items()]
_KEYWORD_RE = re.compile(
    "|".join(f"(?P<{kind}>\\b(?:{alt})\\b)" for kind, alt in _KIND_GROUPS), re.IGNORECASE
)
_ANY_KEYWORD = "|".join(alt for _, alt in _KIND_GROUPS)



def _spelled(fragment: str) -> set[str] | None:
    """Every string a keyword fragment matches, lowercased, when it is one word: the fragments use only letters,
    ``(?:a|b)``, ``?`` and ``[sz]``. None for a fragment of two words (``\\s+``, ``\\s*``)."""
    from re import _parser  # type: ignore[attr-defined]

    def spell(items: list[tuple[object, object]]) -> set[str]:
        out = {""}
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                options = {chr(arg).lower()}  # type: ignore[call-overload]
            elif name == "IN" and all(str(kind) == "LITERAL" for kind, _ in arg):  # type: ignore[attr-defined]
                options = {chr(v).lower() for _, v in arg}  # type: ignore[attr-defined]
            elif name == "SUBPATTERN":
                options = spell(list(arg[-1]))  # type: ignore[index]
            elif name == "BRANCH":
                options = set().union(*(spell(list(b)) for b in arg[1]))  # type: ignore[index]
            elif name == "MAX_REPEAT" and arg[:2] == (0, 1):  # type: ignore[index]
                options = {""} | spell(list(arg[2]))  # type: ignore[index]
            else:
                raise ValueError(name)
            out = {a + b for a in out for b in options}
        return out

    try:
        return spell(list(_parser.parse(fragment)))
    except ValueError:
        return None


def _word_kinds() -> tuple[dict[str, StageKind], frozenset[str]]:
    """(the stage of each word a one-word keyword spells: the first stage in `KEYWORDS` order, as the regex's
    first matching alternative; the first words of the two-word keywords, "roll\\s*out" also written as one)."""
    kinds: dict[str, StageKind] = {}
    starts: set[str] = set()
    for kind, frags in KEYWORDS.items():
        for frag in frags:
            words = _spelled(frag)
            if words is None:
                starts.add(re.match(r"[a-z]+", frag).group())  # type: ignore[union-attr]
                if "\\s*" in frag:
                    starts |= _spelled(frag.replace("\\s*", "")) or set()
                continue
            for word in words:
                kinds.setdefault(word, kind)
    if starts & kinds.keys():
        raise RuntimeError("a two-word keyword starts with a one-word keyword: classify's shortcut needs a rethink")
    return kinds, frozenset(starts)


_WORD_KIND, _TWO_WORD_STARTS = _word_kinds()
_KEYWORD_WORDS: frozenset[str] = frozenset(_WORD_KIND) | _TWO_WORD_STARTS
_WORD_RE = re.compile(r"\w+")

# A list item: bullet or number, then at least one space. Group 1 = indentation, group 2 = item text.
_ITEM_RE = re.compile(r"^([ \t]*)(?:[-*+•]|\d{1,3}[.)])[ \t]+(.*)$")
_CHECKBOX_RE = re.compile(r"^\[[ xX]\][ \t]*")

# Clause boundaries: sentence ends, ';', and sequencing connectors (all consumed).
_CLAUSE_SPLIT_RE = re.compile(
    r"(?:(?<=[.!?])\s+|;+\s*|\n+|,\s*(?:and\s+)?then\b\s*|\s+and\s+then\b\s*|\s+then\s+"
    r"|,\s*(?:and\s+)?(?:after\s+that|afterwards|finally|next)\b,?\s*)",
    re.IGNORECASE,
)
# Split points inside a clause: ',' / ', and' / ' and' right before an action keyword.
_ACTION_SPLIT_RE = re.compile(rf"(?:\s*,\s*(?:and\s+)?|\s+and\s+)(?=(?:{_ANY_KEYWORD})\b)", re.IGNORECASE)
_LEADING_CONNECTOR_RE = re.compile(
    r"^(?:(?:and|then|also|first|firstly|lastly|finally|next|afterwards|after\s+that)\b[\s,]*)+", re.IGNORECASE
)
_EDGE_JUNK = " \t\n\r\f\v,;:.-–—"

_PRIORITY_MARKERS: tuple[tuple[Priority, re.Pattern[str]], ...] = (
    ("critical", re.compile(r"\b(?:critical|urgent|asap|blocker|p0)\b", re.IGNORECASE)),
    ("high", re.compile(r"\b(?:must|important|high[\s-]priority|required|p1)\b", re.IGNORECASE)),
    ("low", re.compile(r"\b(?:optional|nice[\s-]to[\s-]have|if\s+time\s+permits|low[\s-]priority|p3)\b",
                       re.IGNORECASE)),
)

# A literal part of every priority marker above (one per alternative).
_MARKER_PARTS = ("critical", "urgent", "asap", "blocker", "p0", "must", "important", "priority", "required", "p1",
                 "optional", "nice", "permits", "p3")

_TITLE_MAX = 60


class SubTaskSpec(BaseModel):
    """One planned sub-task. ``depends_on`` holds ids of earlier sub-tasks only."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    text: str
    kind: StageKind
    weight_bp: int = Field(ge=0, le=BASIS_POINTS, description="share of the task in basis points")
    estimated_tokens: int = Field(ge=0)
    priority: Priority = "medium"
    depends_on: tuple[str, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def weight(self) -> float:
        """``weight_bp / 10_000`` as a float, for display. Sum ``weight_bp`` for exact totals."""
        return self.weight_bp / BASIS_POINTS

    @property
    def weight_fraction(self) -> Fraction:
        return Fraction(self.weight_bp, BASIS_POINTS)


def classify(text: str) -> StageKind:
    """The stage of the first action keyword in ``text``; ``general`` when there is none.

    The keyword regex tries about a hundred alternatives at every word of the text (7 to 20 µs for a short
    item). In ASCII text a one-word alternative matches exactly one whole word (a ``\\w+`` run) and nothing can
    match elsewhere, so the first word that some alternative spells decides: its stage (`_WORD_KIND`), or, for
    the first word of a two-word keyword ("look up", "set up", "roll out"), the regex tried where it stands.
    Other text goes to the regex search. A property test keeps this equal to the search alone."""
    if text.isascii():
        words = _WORD_RE.findall(text.lower())
        if _KEYWORD_WORDS.isdisjoint(words):
            return "general"
        for word in words:
            kind = _WORD_KIND.get(word)
            if kind is not None:
                return kind
            if word in _TWO_WORD_STARTS:
                break  # the regex decides from here (it finds this word first: nothing before it can match)
    m = _KEYWORD_RE.search(text)
    if m is None or m.lastgroup is None:
        return "general"
    kind: StageKind = m.lastgroup  # type: ignore[assignment]
    return kind


def priority_of(text: str, default: Priority = "medium") -> Priority:
    """The priority marked in ``text`` (see the module doc), else ``default``.

    ASCII text in which none of `_MARKER_PARTS` appears (lowercased) can match no marker: every marker contains
    one of them, so the three searches are skipped (a property test keeps this equal to running them)."""
    if text.isascii():
        lowered = text.lower()
        for part in _MARKER_PARTS:
            if part in lowered:
                break
        else:
            return default
    for level, pattern in _PRIORITY_MARKERS:
        if pattern.search(text):
            return level
    return default


def estimate_subtask_tokens(text: str, kind: StageKind) -> int:
    """``STAGE_BASE_TOKENS[kind] + 3 * ceil(len(text) / 4)``."""
    return STAGE_BASE_TOKENS[kind] + 3 * math.ceil(len(text) / 4)


def _list_items(lines: Sequence[str]) -> tuple[list[str], str]:
    """(item texts, preamble). Items are empty when no line is a list item."""
    items: list[list[str]] = []
    preamble: list[str] = []
    base_indent: int | None = None
    for line in lines:
        m = _ITEM_RE.match(line)
        lead = m.group(1) if m else ""
        indent = len(lead.expandtabs(4)) if lead else 0
        if m and (base_indent is None or indent <= base_indent):
            if base_indent is None:
                base_indent = indent
            text = m.group(2).strip()
            if text[:1] == "[":  # the checkbox pattern is anchored at a "["
                text = _CHECKBOX_RE.sub("", text, count=1).strip()
            items.append([text])
        elif items:
            extra = line.strip()
            if extra:
                items[-1].append(extra)
        else:
            preamble.append(line)
    return ["\n".join(p for p in parts if p) for parts in items], "\n".join(preamble)


def _clean_piece(piece: str) -> str:
    piece = piece.strip(_EDGE_JUNK)
    piece = _LEADING_CONNECTOR_RE.sub("", piece)
    return piece.strip(_EDGE_JUNK)


def _split_actions(clause: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for m in _ACTION_SPLIT_RE.finditer(clause):
        left = clause[start : m.start()].strip()
        # A lone verb ("collect and clean ...") stays joined to what follows.
        if len(left.split()) <= 1:
            continue
        pieces.append(left)
        start = m.end()
    pieces.append(clause[start:])
    return pieces


def _clauses(text: str) -> list[str]:
    out: list[str] = []
    for clause in _CLAUSE_SPLIT_RE.split(text):
        for piece in _split_actions(clause):
            cleaned = _clean_piece(piece)
            if any(ch.isalnum() for ch in cleaned):
                out.append(cleaned)
    return out


def _title(text: str) -> str:
    first = " ".join(text.split())
    if len(first) > _TITLE_MAX:
        cut = first[:_TITLE_MAX]
        space = cut.rfind(" ")
        first = (cut[:space] if space > _TITLE_MAX // 2 else cut).rstrip(_EDGE_JUNK) + "…"
    first = first.rstrip(" .;,")
    return (first[:1].upper() + first[1:]) if first else "Sub-task"


def _dependencies(kinds: Sequence[StageKind]) -> list[tuple[int, ...]]:
    """Per sub-task: indices of the sinks among earlier sub-tasks of strictly lower stage rank.

    Linear in the number of sub-tasks (plus the size of the answer). A sub-task's ancestors are exactly the
    earlier sub-tasks of lower rank, so an earlier sub-task ``j`` of rank ``p`` is a sink for a newcomer of rank
    ``r > p`` unless some sub-task after ``j`` has a rank strictly between ``p`` and ``r`` (that one depends on
    ``j``, directly or not). So the answer for rank ``r`` is, for every ``p < r``, the sub-tasks of rank ``p``
    after the latest one ranked in ``(p, r)``: a slice of the rank's list. A newcomer of rank ``q`` only changes
    the answers of ranks above ``q``; each answer is kept until then (a list of one stage costs O(1) a sub-task).
    """
    levels = max(STAGE_RANK.values()) + 1
    by_rank: list[list[int]] = [[] for _ in range(levels)]  # indices of each rank, ascending
    latest = [-1] * levels  # the latest index of each rank
    cached: list[tuple[int, ...] | None] = [None] * levels
    unknown: list[tuple[int, ...] | None] = [None] * levels
    rank = STAGE_RANK
    deps: list[tuple[int, ...]] = []
    for i, kind in enumerate(kinds):
        q = rank[kind]
        chosen = cached[q]
        if chosen is None:
            parts = []
            cutoff = -1
            for p in range(q - 1, -1, -1):  # from the nearest rank down: the cutoff grows as ranks are passed
                members = by_rank[p]
                if members and members[-1] > cutoff:
                    parts.append(members[bisect.bisect_right(members, cutoff):])
                cutoff = max(cutoff, latest[p])
            chosen = tuple(heapq.merge(*parts)) if len(parts) > 1 else tuple(parts[0]) if parts else ()
            cached[q] = chosen
        deps.append(chosen)
        by_rank[q].append(i)
        latest[q] = i
        cached[q + 1:] = unknown[q + 1:]
    return deps


class SubTaskPlan(NamedTuple):
    """A planned sub-task as plain values (what the plan writes to the ledger): the fields of `SubTaskSpec`,
    built without validating each one (the tool's input was validated; the model is for outputs)."""

    id: str
    title: str
    text: str
    kind: StageKind
    weight_bp: int
    estimated_tokens: int
    priority: Priority
    depends_on: tuple[str, ...]


def decompose(description: str, name: str = "") -> list[SubTaskSpec]:
    """Split ``description`` into ordered sub-tasks (ids ``st-1``, ``st-2``, ...). Never empty.

    ``name`` is the task's name: it stands in for an empty description, and a priority marker in it (or in a
    list's preamble) becomes the default priority of every sub-task without a marker of its own.
    """
    return [SubTaskSpec(**p._asdict()) for p in decompose_plain(description, name)]


def decompose_plain(description: str, name: str = "") -> list[SubTaskPlan]:
    """`decompose` as plain values (`SubTaskPlan`): the same sub-tasks, no model per sub-task."""
    normalised = description.replace("\r\n", "\n").replace("\r", "\n")
    items, preamble = _list_items(normalised.split("\n"))
    texts = [t for t in items if t.strip()]
    if not texts:
        preamble = ""
        texts = _clauses(normalised)
    if not texts:
        texts = [normalised.strip() or name.strip() or "Complete the task."]

    kinds: list[StageKind] = [classify(t) for t in texts]
    overall = priority_of(f"{name}\n{preamble}")
    weights = [STAGE_WEIGHTS[k] for k in kinds]
    weights_bp = largest_remainder_int(BASIS_POINTS, [BASIS_POINTS * w for w in weights], sum(weights))
    deps = _dependencies(kinds)
    ids = [f"st-{i + 1}" for i in range(len(texts))]
    no_deps: tuple[str, ...] = ()
    return [
        SubTaskPlan(ids[i], _title(text), text, kind, weights_bp[i], estimate_subtask_tokens(text, kind),
                    priority_of(text, default=overall),
                    tuple([ids[j] for j in deps[i]]) if deps[i] else no_deps)
        for i, (text, kind) in enumerate(zip(texts, kinds, strict=True))
    ]


def layers_of(depends_on: Sequence[Sequence[str]], ids: Sequence[str]) -> list[list[str]]:
    """`stages` for sub-tasks whose dependencies all name earlier sub-tasks (as `decompose` makes them): a
    sub-task's layer is one past its latest dependency's, found in one pass. A property test keeps it equal to
    `stages` on such plans."""
    layer: dict[str, int] = {}
    layers: list[list[str]] = []
    for sid, deps in zip(ids, depends_on, strict=True):
        n = max([layer[d] for d in deps], default=-1) + 1
        layer[sid] = n
        if n == len(layers):
            layers.append([])
        layers[n].append(sid)
    return layers


def stages(subtasks: Sequence[SubTaskSpec]) -> list[list[str]]:
    """Topological layers of sub-task ids: layer 0 has no dependencies, layer k waits only on earlier layers.

    Within a layer ids keep their input order. Raises ``InvalidInput`` for duplicate ids, dependencies on
    unknown ids, or a cycle.
    """
    index = {s.id: i for i, s in enumerate(subtasks)}
    if len(index) != len(subtasks):
        raise InvalidInput("duplicate sub-task ids")
    for s in subtasks:
        for d in s.depends_on:
            if d not in index:
                raise InvalidInput("sub-task depends on an unknown id", sub_task=s.id, depends_on=d)
    remaining = {s.id: set(s.depends_on) for s in subtasks}
    done: set[str] = set()
    layers: list[list[str]] = []
    while remaining:
        layer = [s.id for s in subtasks if s.id in remaining and remaining[s.id] <= done]
        if not layer:
            raise InvalidInput("sub-task dependencies form a cycle", sub_tasks=sorted(remaining))
        for sid in layer:
            del remaining[sid]
        done.update(layer)
        layers.append(layer)
    return layers


def ready_after(finished: str, depends_on: Mapping[str, Sequence[str]], statuses: Mapping[str, str]) -> list[str]:
    """Sub-tasks that `finished` unblocks: still pending, depending on it, every dependency succeeded."""
    done = {sid for sid, status in statuses.items() if status == "success"}
    return [sid for sid, deps in depends_on.items()
            if statuses.get(sid) == "pending" and finished in deps and set(deps) <= done]
