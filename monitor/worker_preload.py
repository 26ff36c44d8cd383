"""Imported last by the forkserver that forks the worker processes (`monitor.workers`), after
the parsers (`workers.preload_modules`).

What the forkserver imports is in memory once, shared by every worker copy-on-write, instead
of once per worker, and a worker forked from it starts in milliseconds, so workers can be
replaced often (which is what bounds their heaps). `gc.freeze()` moves the imported objects
out of the collector's generations: a worker's collections would otherwise write to every one
of them and so copy their pages into the worker.
"""

import gc

from monitor.extract import bound_large_allocations

bound_large_allocations()  # inherited by every fork
gc.collect()
gc.freeze()
