"""The four generated reference pages match the code they are generated from."""

from __future__ import annotations

import pytest

from tests.docs.docs_helpers import DOCS, generator

PAGES = sorted(generator().PAGES)


@pytest.mark.parametrize("name", PAGES)
def test_committed_reference_page_is_what_the_generator_writes_now(name: str) -> None:
    gen = generator()
    committed = (DOCS / "reference" / name).read_text(encoding="utf-8")
    rendered = gen.PAGES[name]()
    assert committed == rendered, (
        f"docs/reference/{name} is out of date with the code: run `{gen.COMMAND}` and commit it"
    )


def test_stale_pages_names_a_page_that_differs(tmp_path, monkeypatch) -> None:
    gen = generator()
    monkeypatch.setattr(gen, "REFERENCE", tmp_path)
    (tmp_path / "rest.md").write_text(gen.render_rest(), encoding="utf-8")
    (tmp_path / "cli.md").write_text("# stale\n", encoding="utf-8")
    monkeypatch.setattr(gen, "PAGES", {"rest.md": gen.render_rest, "cli.md": gen.render_cli})
    assert gen.stale_pages() == ["cli.md"]


def test_the_python_api_page_covers_every_public_name() -> None:
    import agentqueue

    page = generator().render_python_api()
    missing = [n for n in agentqueue.__all__ if n != "__version__" and f"## {n}\n" not in page]
    assert missing == []
    assert "*(no docstring)*" not in page, "a public name or method has no docstring"
