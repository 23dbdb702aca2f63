"""The bottom layer: contracts every stage shares.

Modules here import nothing from ``audit`` except :mod:`audit.errors` and each other, so any stage, reader,
integration or page can use them without pulling in anything above. One definition of each:

- :mod:`audit.core.atomic`: atomic writes (bytes, text, JSON, Parquet) and standard JSON;
- :mod:`audit.core.sorting`: the natural sort key for class names and group values;
- :mod:`audit.core.system`: usable CPU cores;
- :mod:`audit.core.protocols`: the names of evaluation protocols;
- :mod:`audit.core.intervals`: Wilson intervals and Benjamini-Hochberg q-values;
- :mod:`audit.core.directions`: whether a metric is better high or low;
- :mod:`audit.core.numfmt`: the one number formatter.
"""
