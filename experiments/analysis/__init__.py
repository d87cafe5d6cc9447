"""Analysis of results: runs as records (:mod:`.records`), statistics (:mod:`.stats`),
the post's figures (:mod:`.figures`) and the Markdown report (:mod:`.report`).

The layer reads the plain files of :mod:`experiments.results.store` and nothing of the
training side, so figures and reports can be made anywhere the results are.
"""
