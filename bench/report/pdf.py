"""Pages of the PDF report: text pages, tables drawn as matplotlib tables, and figures, in
one ``PdfPages`` document that is byte-identical when rebuilt from the same runs (no
creation date in the metadata; see PITFALLS.md).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from bench.report.tables import BEST, SECOND, Table

PAGE = (11.69, 8.27)  # A4 landscape, inches
MARGIN = 0.5  # inches
LINES_PER_PAGE = 44
WRAP = 135  # characters per text line at 9 pt
ROWS_PER_PAGE = 22
CHAR_WIDTH = 0.62  # mean advance of DejaVu Sans digits and lower case, in em
CELL_PAD = 2.0  # characters of padding per column
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
    return f"${command}{{\\mathrm{{{''.join(MATHTEXT.get(c, c) for c in text)}}}}}$"


def table_pages(table: Table) -> list[Figure]:
    """The table drawn on as many pages as its rows need; the font shrinks to fit the width."""
    header = table.header
    if table.groups:
        spans = [label for label, width in table.groups for _ in range(width)]
        header = (header[0], *(f"{g}\n{h}" for g, h in zip(spans, header[1:], strict=True)))
    chars = [
        max(len(part) for text in (h, *(row[j] for row in table.rows)) for part in text.split("\n"))
        + CELL_PAD
        for j, h in enumerate(header)
    ]
    usable = PAGE[0] - 2 * MARGIN
    fontsize = min(9.0, 72 * usable / (CHAR_WIDTH * sum(chars)))
    widths = [c * CHAR_WIDTH * fontsize / 72 / usable for c in chars]
    bottom, top = 1.3, PAGE[1] - MARGIN - 0.45  # inches: room for the note and the title
    row_height = 1.9 * fontsize / 72 / (top - bottom)
    header_height = row_height * (2 if table.groups else 1)
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
            colWidths=widths,
            loc="upper left",
            cellLoc="right",
        )
        drawn.auto_set_font_size(False)
        drawn.set_fontsize(fontsize)
        for (i, j), cell in drawn.get_celld().items():
            cell.set_linewidth(0.3)
            cell.set_height(header_height if i == 0 else row_height)
            text = cell.get_text()
            if j == 0:
                text.set_horizontalalignment("left")
                cell.PAD = 0.02
            if i == 0:
                cell.set_facecolor("0.9")
                text.set_fontweight("bold")
                continue
            mark = table.mark(start + i - 1, j)
            if mark == BEST:
                text.set_fontweight("bold")
            elif mark == SECOND:
                text.set_text(_mathtext(text.get_text(), r"\underline"))
        if table.note:
            fig.text(
                MARGIN / PAGE[0],
                MARGIN / PAGE[1],
                textwrap.fill(table.note, WRAP + 20),
                fontsize=8,
                va="bottom",
                color="0.25",
            )
        pages.append(fig)
    return pages
