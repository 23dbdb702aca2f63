"""Static report of a run: one self-contained ``report.html`` and a Markdown ``summary.md``."""
