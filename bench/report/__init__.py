"""Reports of an experiment regenerated from the tracking store: tables, statistics,
figures and a PDF (``bench report``; EVALUATION.md, Statistics).

Entry points: :func:`bench.report.build.build_report` and, for the command line,
:func:`bench.report.cli.add_report_parser`. Nothing is imported here, so that registering
the subcommand does not load matplotlib, scipy or MLflow.
"""
