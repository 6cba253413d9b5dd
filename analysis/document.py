"""The report as a document: a list of blocks, built once and rendered to Markdown and to HTML by analysis.report,
so the two formats cannot drift apart. Sections elsewhere (analysis.ingress) build blocks without importing the
report itself.

The layout the blocks serve (issue 27): the answer first (``Answer``, the summary ``Table`` and ``Figure`` in one
``Group``), then one section per question, each with its figure before its table; a table too wide to read is
shown short with the full one folded (``Details``); the method text of every table (``Table.method``) is gathered
into one section at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2
    role: str = "detail"  # level-2 headings open a section: "summary", "detail" or "method" (HTML class)


@dataclass
class Para:
    text: str  # may hold **bold**; nothing else is interpreted


@dataclass
class Banner:
    title: str
    lines: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    csv: str  # file name under tables/
    note: str = ""  # one or two plain sentences shown under the table
    method: str = ""  # how it was computed: moved to the report's "How this was measured" section
    name: str = ""  # what the method text is about, e.g. "The concurrency table"; the CSV name when empty


@dataclass
class Figure:
    path: Path | None
    caption: str


@dataclass
class Bullets:
    items: list[str] = field(default_factory=list)


@dataclass
class Answer:
    """The question the report answers and one sentence per claim, each with its interval."""

    question: str
    claims: list[str]


@dataclass
class Details:
    """Blocks folded away in HTML (<details>), with ``summary`` as the line a reader clicks; in Markdown the same
    blocks follow the summary line."""

    summary: str
    blocks: list[Block]


@dataclass
class Group:
    """Blocks laid out together in HTML (a <div> of class ``css``); in Markdown they simply follow each other."""

    css: str
    blocks: list[Block]


Block = Heading | Para | Banner | Table | Figure | Bullets | Answer | Details | Group
