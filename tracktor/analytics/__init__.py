"""Answers from the warehouse: queries.py (funnels and metrics through sql/queries),
report.py (questions, rendering), charts.py (SVG), api.py (the JSON API)."""
