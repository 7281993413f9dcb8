"""Reports of an experiment regenerated from the tracking store: tables, statistics,
figures and a PDF (``bench report``; EVALUATION.md, Statistics)."""

from bench.report.build import build_report

__all__ = ["build_report"]
