"""The concepts page draws the same state machine as the code's transition table."""

from __future__ import annotations

from agentqueue.states import edges
from tests.docs.docs_helpers import DOCS
from tests.test_states import _mermaid_edges  # the one parser of the drawings


def test_the_concepts_state_diagram_draws_exactly_the_table_edges() -> None:
    drawn = _mermaid_edges((DOCS / "concepts.md").read_text(encoding="utf-8"))
    table = {(source.value, target.value) for source, target in edges()}
    assert drawn - table == set(), "edges drawn in docs/concepts.md that the table does not allow"
    assert table - drawn == set(), "edges the table allows that docs/concepts.md does not draw"


def test_the_concepts_page_states_the_guarantee() -> None:
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    for claim in ("At-least-once execution", "Exactly-once completion", "Steps run once"):
        assert claim in text
