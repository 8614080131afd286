"""The state machine: the transition table, its derived sets, and the drawing in the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentqueue.states import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    JobStatus,
    Transition,
    allowed_sources,
    can_transition,
    edges,
)

B, P, R, W, C, F, X = (
    JobStatus.BLOCKED,
    JobStatus.PENDING,
    JobStatus.PROCESSING,
    JobStatus.WAITING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)

EXPECTED_TABLE = {
    Transition.CLAIM: ({P}, {R}),
    Transition.COMPLETE: ({R}, {C}),
    Transition.RETRY_LATER: ({R}, {P}),
    Transition.FAIL: ({R}, {F}),
    Transition.RELEASE: ({R}, {P}),
    Transition.RESCUE: ({R}, {P, F}),
    Transition.WAIT: ({R}, {W}),
    Transition.RESUME: ({W}, {P}),
    Transition.UNBLOCK: ({B}, {P}),
    Transition.CANCEL: ({B, P, W, R}, {X}),
    Transition.RETRY: ({F, X}, {P, B}),
    Transition.EDIT: ({P}, {P}),
}

ARCHITECTURE_DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_every_transition_has_exactly_the_documented_sources_and_targets() -> None:
    assert set(TRANSITIONS) == set(Transition)
    actual = {name: (set(src), set(dst)) for name, (src, dst) in TRANSITIONS.items()}
    assert actual == EXPECTED_TABLE


@pytest.mark.parametrize("transition", list(Transition))
def test_allowed_sources_returns_the_tables_source_states(transition: Transition) -> None:
    assert allowed_sources(transition) == frozenset(EXPECTED_TABLE[transition][0])


def test_edges_is_the_union_of_every_transitions_source_target_pairs() -> None:
    expected = {(s, t) for src, dst in EXPECTED_TABLE.values() for s in src for t in dst}
    assert edges() == expected
    assert (P, R) in edges()
    assert (C, P) not in edges()  # a completed job is never run again


def test_terminal_and_active_states_partition_every_status() -> None:
    assert {C, F, X} == TERMINAL
    assert {B, P, R, W} == ACTIVE
    assert TERMINAL.isdisjoint(ACTIVE)
    assert set(JobStatus) == TERMINAL | ACTIVE


def test_terminal_states_are_left_only_by_an_operator_retry() -> None:
    leaving_terminal = {name for name, (src, _dst) in TRANSITIONS.items() if src & TERMINAL}
    assert leaving_terminal == {Transition.RETRY}
    assert not any(source is C for source, _target in edges())


def test_can_transition_checks_both_ends_of_the_edge() -> None:
    assert can_transition(Transition.RESCUE, R, F)
    assert can_transition(Transition.CANCEL, W, X)
    assert not can_transition(Transition.CANCEL, C, X)
    assert not can_transition(Transition.CLAIM, P, C)
    assert not can_transition(Transition.RETRY, C, P)


def _mermaid_edges(text: str) -> set[tuple[str, str]]:
    """Return the `a --> b` edges of the first mermaid stateDiagram block of `text`."""
    block = re.search(r"```mermaid\s*\n\s*stateDiagram(?:-v2)?\s*\n(.*?)```", text, re.DOTALL)
    assert block is not None, "docs/architecture.md has no ```mermaid stateDiagram block"
    found: set[tuple[str, str]] = set()
    for line in block.group(1).splitlines():
        match = re.match(r"\s*([\w\[\]*]+)\s*-->\s*([\w\[\]*]+)", line)
        if match and "[*]" not in match.groups():
            found.add((match.group(1), match.group(2)))
    return found


def test_the_mermaid_parser_reads_labelled_edges_and_ignores_start_and_end_markers() -> None:
    text = (
        "intro\n```mermaid\nstateDiagram-v2\n    [*] --> pending\n"
        "    pending --> processing: claim\n    completed --> [*]\n```\n"
        "```mermaid\nstateDiagram-v2\n    a --> b\n```\n"
    )
    assert _mermaid_edges(text) == {("pending", "processing")}


def test_the_state_diagram_in_the_architecture_doc_draws_exactly_the_table_edges() -> None:
    assert ARCHITECTURE_DOC.is_file(), f"{ARCHITECTURE_DOC} is missing (it draws the states)"
    drawn = _mermaid_edges(ARCHITECTURE_DOC.read_text(encoding="utf-8"))
    table = {(source.value, target.value) for source, target in edges()}
    assert drawn - table == set(), "edges drawn that the table does not allow"
    assert table - drawn == set(), "edges the table allows that the drawing lacks"
