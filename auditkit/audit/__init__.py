"""Auditing suspect models: white-box cosine test with subspace alignment (paper §3.2, §3.4)."""
