"""Tables of :mod:`bench.report.tables` written out: GitHub-flavoured Markdown and LaTeX
(booktabs). Best values are bold and second ones underlined, as the table's marks say;
columns whose every cell is a number are right-aligned.
"""

from __future__ import annotations

import re

from bench.report.tables import BEST, SECOND, Table

NUMERIC = re.compile(r"^([−+<\-]?[\d.]+([\s%†/]|$)|–$|n/a$)")


def numeric_column(texts: list[str]) -> bool:
    """Whether every text of a column is a number as shown (so it is right-aligned)."""
    return all(NUMERIC.match(text) for text in texts)


def flat_header(table: Table) -> tuple[str, ...]:
    """Column labels with their group label in front, for formats without spans."""
    if not table.groups:
        return table.header
    spans = [label for label, width in table.groups for _ in range(width)]
    return (table.header[0], *(f"{g} {h}" for g, h in zip(spans, table.header[1:], strict=True)))


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table: **best**, <u>second</u>."""

    def cell(text: str, mark: int) -> str:
        text = text.replace("|", "\\|")
        return {BEST: f"**{text}**", SECOND: f"<u>{text}</u>"}.get(mark, text)

    header = flat_header(table)
    right = [j > 0 and numeric_column([row[j] for row in table.rows]) for j in range(len(header))]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if r else ":---" for r in right) + "|",
    ]
    for i, row in enumerate(table.rows):
        lines.append("| " + " | ".join(cell(t, table.mark(i, j)) for j, t in enumerate(row)) + " |")
    return "\n".join(lines)


LATEX_CHARS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "κ": r"$\kappa$",
    "Δ": r"$\Delta$",
    "–": "--",
    "−": "$-$",
    "†": r"$^\dagger$",
    "<": r"$<$",
    ">": r"$>$",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_CHARS.get(c, c) for c in str(text))


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment: \\textbf best, \\underline second."""

    def cell(text: str, mark: int) -> str:
        text = latex_escape(text)
        return {BEST: rf"\textbf{{{text}}}", SECOND: rf"\underline{{{text}}}"}.get(mark, text)

    columns = len(table.header)
    caption = latex_escape(table.title) + (f". {latex_escape(table.note)}" if table.note else "")
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        rf"\caption{{{caption}}}",
        rf"\label{{tab:{table.name.replace('_', '-')}}}",
        rf"\begin{{tabular}}{{l{'r' * (columns - 1)}}}",
        r"\toprule",
    ]
    if table.groups:
        spans, rules, start = [""], [], 2
        for label, width in table.groups:
            spans.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(label)}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
            start += width
        lines += [" & ".join(spans) + r" \\", " ".join(rules)]
    lines.append(" & ".join(latex_escape(h) for h in table.header) + r" \\")
    lines.append(r"\midrule")
    for i, row in enumerate(table.rows):
        lines.append(" & ".join(cell(t, table.mark(i, j)) for j, t in enumerate(row)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
