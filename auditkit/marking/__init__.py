"""Radioactive marking (paper §3.3, eq. 3–5): the optimisation core and the release writer."""
