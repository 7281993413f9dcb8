"""Pages of the PDF report: text pages, tables drawn as matplotlib tables, and figures, in
one ``PdfPages`` document that is byte-identical when rebuilt from the same runs (no
creation or modification date in the metadata, which matplotlib would otherwise set to the
time of the build).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

from bench.report.render import numeric_column
from bench.report.tables import BEST, SECOND, Table

PAGE = (11.69, 8.27)  # A4 landscape, inches
MARGIN = 0.5  # inches
LINES_PER_PAGE = 44
WRAP = 135  # characters per text line at 9 pt
TITLE_IN = 0.35  # inches from a table title to its header
NOTE_LINE_IN = 0.16  # inches per line of a table note
TABLE_GAP_IN = 0.35  # inches between tables on one page
MAX_FONT = 9.0
MEASURE_SIZE = 10.0
CELL_PAD_PT = 10.0  # horizontal padding per cell at MEASURE_SIZE, points
_MEASURE_FONT = FontProperties(size=MEASURE_SIZE, weight="bold")
_TEXT_TO_PATH = TextToPath()
MATHTEXT = {" ": r"\ ", "±": r"\pm", "†": r"^\dagger", "%": r"\%", "–": "-", "−": "-"}


def write_pdf(path: Path, pages: Iterable[Figure], title: str) -> None:
    """Save ``pages`` in order as one PDF without creation or modification dates."""
    metadata = {
        "Title": title,
        "Creator": "kedr-bench report",
        "CreationDate": None,
        "ModDate": None,
    }
    with PdfPages(path, metadata=metadata) as pdf:
        for page in pages:
            pdf.savefig(page)


class Subheading(str):
    """A paragraph drawn as a bold heading inside a run of text."""


def text_pages(title: str, paragraphs: list[str]) -> list[Figure]:
    """Paragraphs (and :class:`Subheading` s) wrapped to the page width, continued on
    further pages when long."""
    lines: list[tuple[str, bool]] = []  # (text, is a heading)
    for paragraph in paragraphs:
        if isinstance(paragraph, Subheading):
            lines += [(str(paragraph), True), ("", False)]
            continue
        indent = "    " if paragraph.startswith("- ") else ""
        wrapped = textwrap.wrap(paragraph, WRAP, subsequent_indent=indent) or [""]
        lines += [(line, False) for line in wrapped] + [("", False)]
    x, step = MARGIN / PAGE[0], 9 * 1.35 / 72 / PAGE[1]  # 9 pt lines, 1.35 spacing
    pages = []
    for start in range(0, max(len(lines), 1), LINES_PER_PAGE):
        fig = Figure(figsize=PAGE)
        heading = title if start == 0 else f"{title} (continued)"
        fig.text(x, 1 - MARGIN / PAGE[1], heading, fontsize=14, fontweight="bold", va="top")
        y = 1 - (MARGIN + 0.45) / PAGE[1]
        for text, is_heading in lines[start : start + LINES_PER_PAGE]:
            if text:
                weight, size = ("bold", 11) if is_heading else ("normal", 9)
                fig.text(x, y, text, fontsize=size, fontweight=weight, va="top")
            y -= step
        pages.append(fig)
    return pages


def _mathtext(text: str, command: str) -> str:
    """``text`` under a mathtext ``command`` (e.g. \\underline), upright, spaces kept."""
    body = "".join(MATHTEXT.get(c, c) for c in text.replace(" ± ", "±"))
    return f"${command}{{\\mathrm{{{body}}}}}$"


def _width_pt(text: str) -> float:
    """Width of the widest line of ``text`` in bold at :data:`MEASURE_SIZE` points."""
    return max(
        _TEXT_TO_PATH.get_text_width_height_descent(line, _MEASURE_FONT, ismath=False)[0]
        for line in text.split("\n")
    )


@dataclass(frozen=True)
class _Layout:
    """How one table is drawn: header lines, column widths (inches), font size, alignment."""

    header: tuple[str, ...]
    widths: tuple[float, ...]
    scale: float
    right: tuple[bool, ...]

    @property
    def fontsize(self) -> float:
        return MEASURE_SIZE * self.scale

    @property
    def row_in(self) -> float:
        return 1.9 * self.fontsize / 72

    @property
    def header_in(self) -> float:
        return self.row_in * max(h.count("\n") + 1 for h in self.header)


def _layout(table: Table) -> _Layout:
    """Column widths measured from the text; the font shrinks (from 9 pt) until the table
    fits the page width; numbers right-aligned, text left-aligned."""
    header = table.header
    if table.groups:
        spans = [label for label, width in table.groups for _ in range(width)]
        header = (header[0], *(f"{g}\n{h}" for g, h in zip(spans, header[1:], strict=True)))
    columns = [[row[j] for row in table.rows] for j in range(len(header))]
    measured = [max(_width_pt(t) for t in (h, *c)) for h, c in zip(header, columns, strict=True)]
    usable = PAGE[0] - 2 * MARGIN
    scale = min(MAX_FONT / MEASURE_SIZE, 72 * usable / sum(w + CELL_PAD_PT for w in measured))
    return _Layout(
        header=header,
        widths=tuple((w + CELL_PAD_PT) * scale / 72 for w in measured),
        scale=scale,
        right=tuple(j > 0 and numeric_column(c) for j, c in enumerate(columns)),
    )


def _note_lines(table: Table) -> list[str]:
    return textwrap.wrap(table.note, WRAP + 20) if table.note else []


def _height(table: Table, layout: _Layout, n_rows: int) -> float:
    """Inches that the title, the header, ``n_rows`` rows and the note take."""
    return (
        TITLE_IN
        + layout.header_in
        + n_rows * layout.row_in
        + NOTE_LINE_IN * len(_note_lines(table))
        + 0.12
    )


def _draw(
    fig: Figure, table: Table, layout: _Layout, first: int, n_rows: int, top: float, title: str
) -> None:
    """Draw the title, rows ``first``..``first + n_rows`` and the note from ``top`` (inches
    from the page bottom) down."""
    usable = PAGE[0] - 2 * MARGIN
    fig.text(MARGIN / PAGE[0], top / PAGE[1], title, fontsize=11, fontweight="bold", va="top")
    top -= TITLE_IN
    height = layout.header_in + n_rows * layout.row_in
    ax = fig.add_axes(
        (MARGIN / PAGE[0], (top - height) / PAGE[1], usable / PAGE[0], height / PAGE[1])
    )
    ax.set_axis_off()
    rows = table.rows[first : first + n_rows]
    drawn = ax.table(
        cellText=[list(r) for r in rows] or None,
        colLabels=list(layout.header),
        colWidths=[w / usable for w in layout.widths],
        loc="upper left",
    )
    drawn.AXESPAD = 0  # flush with the page margin
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(layout.fontsize)
    for (i, j), cell in drawn.get_celld().items():
        cell.set_linewidth(0.3)
        cell.set_height((layout.header_in if i == 0 else layout.row_in) / height)
        cell.PAD = CELL_PAD_PT / 2 * layout.scale / 72 / layout.widths[j]
        text = cell.get_text()
        text.set_horizontalalignment("right" if layout.right[j] else "left")
        if i == 0:
            cell.set_facecolor("0.9")
            text.set_fontweight("bold")
            text.set_horizontalalignment("center")
            continue
        mark = table.mark(first + i - 1, j)
        if mark == BEST:
            text.set_fontweight("bold")
        elif mark == SECOND:
            text.set_text(_mathtext(text.get_text(), r"\underline"))
    if table.note:
        fig.text(
            MARGIN / PAGE[0],
            (top - height - 0.12) / PAGE[1],
            "\n".join(_note_lines(table)),
            fontsize=8,
            va="top",
            color="0.25",
            linespacing=1.3,
        )


def table_pages(tables: list[Table]) -> list[Figure]:
    """Tables stacked down A4 landscape pages, a new page when the next does not fit; a
    table longer than a page continues on the next ones, titled (k/n)."""
    pages: list[Figure] = []
    space = 0.0  # inches left on the current page
    for table in tables:
        layout = _layout(table)
        room = PAGE[1] - 2 * MARGIN - _height(table, layout, 0)
        per_page = max(1, int(room / layout.row_in))
        chunks = range(0, max(len(table.rows), 1), per_page)
        for number, first in enumerate(chunks, start=1):
            n_rows = len(table.rows[first : first + per_page])
            needed = _height(table, layout, n_rows)
            if not pages or needed > space:
                pages.append(Figure(figsize=PAGE))
                space = PAGE[1] - 2 * MARGIN
            suffix = f" ({number}/{len(chunks)})" if len(chunks) > 1 else ""
            _draw(pages[-1], table, layout, first, n_rows, MARGIN + space, table.title + suffix)
            space -= needed + TABLE_GAP_IN
    return pages
