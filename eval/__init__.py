"""lsr.eval: the evaluation harness: datasets with qrels, trec_eval-exact metrics, one Evaluation record and
one runner for every ``lsr eval`` mode, reports with cost next to quality, ranx's paired t-test.

Depends on lsr (searcher, data IO); nothing in lsr.index or the core lsr modules imports it.
"""
