"""numba kernels. Each module documents its array layout; kernels trust their input
(validation happens once, in :mod:`lsr.index.search`)."""
