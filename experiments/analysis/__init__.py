"""Analysis of results: runs as records (:mod:`.records`), statistics (:mod:`.stats`),
the post's figures (:mod:`.figures`, with :mod:`.panels` for their limits and
:mod:`.synthetic_figure`) and the report (:mod:`.report`, :mod:`.report_tables`; its key
findings :mod:`.findings`, the grid's progress :mod:`.progress`, the runs' provenance
:mod:`.provenance`, numbers for people :mod:`.readable`); two grids compared
(:mod:`.grids`, :mod:`.grids_report`); TensorBoard event files from stored curves
(:mod:`.event_files`).

The layer reads the plain files of :mod:`experiments.results.store` and nothing of the
training side, so figures and reports can be made anywhere the results are. (The event
files are built as the live log builds them, by :mod:`experiments.results.tensorboard`.)
"""
