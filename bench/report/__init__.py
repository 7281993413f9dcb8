"""Reports of an experiment regenerated from the tracking store: tables, statistics,
figures and a PDF (``bench report``; bench/README.md, "Evaluation protocol").

Entry points: :func:`bench.report.build.build_report` and, for the command line,
``bench.cli.report``. Nothing is imported here, so that importing the package does not
load matplotlib, scipy or MLflow.
"""
