"""Read a page the way a user does: tables as rows of cell text, links by their text."""

from __future__ import annotations

from html.parser import HTMLParser


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.links: list[tuple[str, str]] = []
        self._depth = 0
        self._cell: list[str] | None = None
        self._href: str | None = None
        self._link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in {"td", "th"}:
            self._cell = []
        elif tag == "a":
            self._href, self._link_text = dict(attrs).get("href"), []

    def handle_endtag(self, tag: str) -> None:
        if tag in {"td", "th"} and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "a" and self._href is not None:
            self.links.append(("".join(self._link_text).strip(), self._href))
            self._href = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._href is not None:
            self._link_text.append(data)


def parse(content: bytes | str) -> _Tables:
    parser = _Tables()
    parser.feed(content.decode() if isinstance(content, bytes) else content)
    return parser


def table(content: bytes | str, index: int = 0) -> list[list[str]]:
    """Body rows (header row dropped) of the index-th table."""
    return parse(content).tables[index][1:]


def link(content: bytes | str, text: str) -> str:
    """The href of the first link whose text is exactly `text`."""
    for link_text, href in parse(content).links:
        if link_text == text:
            return href
    raise AssertionError(f"no link {text!r}")
