"""Stage 4, `catalogue_recluster` and `catalogue_assign`: embedding every valid track with the
champion, clustering with stable ids, what changed since the last run, and placing newly
validated tracks in the current clusters between retrains.

May import `core`, `model`, `registry` and `quality` (the out-of-distribution share of a batch).
"""
