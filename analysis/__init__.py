"""From one benchmark results folder (analysis/RESULTS.md) to tables, figures and a report: ``python -m analysis``.

Reads only the results folder; never imports the serving code (function/, image/) or TensorFlow.
"""
