"""The report as a document: a list of blocks, built once and rendered to Markdown and to HTML by analysis.report,
so the two formats cannot drift apart. Sections elsewhere (analysis.ingress) build blocks without importing the
report itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


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
    note: str = ""


@dataclass
class Figure:
    path: Path | None
    caption: str


@dataclass
class Bullets:
    items: list[str] = field(default_factory=list)


Block = Heading | Para | Banner | Table | Figure | Bullets
