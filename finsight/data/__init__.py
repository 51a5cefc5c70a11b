"""`finsight prep`: raw labeled text -> clean, deduplicated, leakage-free train/validation/test.

The pipeline (:func:`finsight.data.prep.prepare`) reads every input (``load``), cleans the
texts (``clean``), maps labels onto the canonical schema (``finsight.labels``), collapses
exact and normalised duplicates and resolves label conflicts (``dedupe``) before splitting
(``split``), so a normalised text can never land in two splits, and writes the splits with
a data card (``card``).
"""
