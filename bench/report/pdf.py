"""Pages of the PDF report: text pages, tables drawn as matplotlib tables, and figures, in
one ``PdfPages`` document that is byte-identical when rebuilt from the same runs (no
creation date in the metadata; see PITFALLS.md).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

from bench.report.tables import BEST, SECOND, Table

PAGE = (11.69, 8.27)  # A4 landscape, inches
MARGIN = 0.5  # inches
LINES_PER_PAGE = 44
WRAP = 135  # characters per text line at 9 pt
ROWS_PER_PAGE = 22
MAX_FONT = 9.0
MEASURE_SIZE = 10.0
CELL_PAD_PT = 10.0  # horizontal padding per cell at MEASURE_SIZE, points
NUMERIC = re.compile(r"^([−+<\-]?\d|–$|n/a$|\(CI)")
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


def text_pages(title: str, paragraphs: list[str]) -> list[Figure]:
    """Paragraphs wrapped to the page width, continued on further pages when long."""
    lines = []
    for paragraph in paragraphs:
        indent = "    " if paragraph.startswith("- ") else ""
        lines += textwrap.wrap(paragraph, WRAP, subsequent_indent=indent) or [""]
        lines.append("")
    pages = []
    for start in range(0, max(len(lines), 1), LINES_PER_PAGE):
        fig = Figure(figsize=PAGE)
        heading = title if start == 0 else f"{title} (continued)"
        fig.text(
            MARGIN / PAGE[0],
            1 - MARGIN / PAGE[1],
            heading,
            fontsize=14,
            fontweight="bold",
            va="top",
        )
        body = "\n".join(lines[start : start + LINES_PER_PAGE])
        fig.text(
            MARGIN / PAGE[0],
            1 - (MARGIN + 0.45) / PAGE[1],
            body,
            fontsize=9,
            va="top",
            linespacing=1.35,
        )
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


def _numeric(column: list[str]) -> bool:
    return all(NUMERIC.match(text) for text in column)


def table_pages(table: Table) -> list[Figure]:
    """The table drawn on as many pages as its rows need: column widths measured from the
    text, the font shrunk (from 9 pt) until the table fits the page width; numbers right-
    aligned, text left-aligned; the note right below the table."""
    header = table.header
    if table.groups:
        spans = [label for label, width in table.groups for _ in range(width)]
        header = (header[0], *(f"{g}\n{h}" for g, h in zip(spans, header[1:], strict=True)))
    columns = [[row[j] for row in table.rows] for j in range(len(header))]
    measured = [max(_width_pt(t) for t in (h, *c)) for h, c in zip(header, columns, strict=True)]
    usable = PAGE[0] - 2 * MARGIN
    scale = min(MAX_FONT / MEASURE_SIZE, 72 * usable / sum(w + CELL_PAD_PT for w in measured))
    fontsize = MEASURE_SIZE * scale
    widths = [(w + CELL_PAD_PT) * scale / 72 for w in measured]  # inches
    right = [j > 0 and _numeric(c) for j, c in enumerate(columns)]
    bottom, top = MARGIN, PAGE[1] - MARGIN - 0.45  # inches below the title
    row_in = 1.9 * fontsize / 72
    header_in = row_in * (2 if table.groups else 1)
    pages = []
    chunks = range(0, max(len(table.rows), 1), ROWS_PER_PAGE)
    for number, start in enumerate(chunks, start=1):
        fig = Figure(figsize=PAGE)
        suffix = f" ({number}/{len(chunks)})" if len(chunks) > 1 else ""
        fig.text(
            MARGIN / PAGE[0],
            1 - MARGIN / PAGE[1],
            table.title + suffix,
            fontsize=12,
            fontweight="bold",
            va="top",
        )
        ax = fig.add_axes(
            (MARGIN / PAGE[0], bottom / PAGE[1], usable / PAGE[0], (top - bottom) / PAGE[1])
        )
        ax.set_axis_off()
        rows = table.rows[start : start + ROWS_PER_PAGE]
        drawn = ax.table(
            cellText=[list(r) for r in rows] or None,
            colLabels=list(header),
            colWidths=[w / usable for w in widths],
            loc="upper left",
        )
        drawn.auto_set_font_size(False)
        drawn.set_fontsize(fontsize)
        for (i, j), cell in drawn.get_celld().items():
            cell.set_linewidth(0.3)
            cell.set_height((header_in if i == 0 else row_in) / (top - bottom))
            cell.PAD = CELL_PAD_PT / 2 * scale / 72 / widths[j]
            text = cell.get_text()
            text.set_horizontalalignment("right" if right[j] else "left")
            if i == 0:
                cell.set_facecolor("0.9")
                text.set_fontweight("bold")
                text.set_horizontalalignment("center")
                continue
            mark = table.mark(start + i - 1, j)
            if mark == BEST:
                text.set_fontweight("bold")
            elif mark == SECOND:
                text.set_text(_mathtext(text.get_text(), r"\underline"))
        if table.note:
            below = top - header_in - row_in * len(rows) - 0.15  # inches from the bottom
            fig.text(
                MARGIN / PAGE[0],
                below / PAGE[1],
                textwrap.fill(table.note, WRAP + 20),
                fontsize=8,
                va="top",
                color="0.25",
            )
        pages.append(fig)
    return pages
