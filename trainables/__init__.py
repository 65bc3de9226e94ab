"""How one trial trains: data sets as tensors, corruptions, models, training engines.

A training library: it never imports `sweep` or `analysis` and knows nothing of
Ray Tune or files. Engines take tensors and seeds and return records.
"""
