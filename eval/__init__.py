"""lsr.eval: evaluation harness: datasets with qrels, ranx metrics, reports with cost next to quality.

Depends on lsr (searcher, data IO); nothing in lsr.index or the core lsr modules imports it.
"""
