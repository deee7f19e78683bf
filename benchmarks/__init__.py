"""Benchmark harnesses, run as modules. ``index_bench`` (issue 4) compares our index with
SciPy, Seismic and Lucene on a synthetic SPLADE-like collection (``synthetic``) and on
real vectors; see README.md in this folder."""
