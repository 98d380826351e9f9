"""The cyclic garbage collector's settings for zkpy's long-running processes (core and workers).

A server makes many short-lived objects per request (requests, txns, nodes, tuples), freed by
reference counting; very few form cycles. With CPython's default threshold (700 allocations) a
collection runs every few requests and promotes what is in flight to the older generations,
which then get full collections -- over everything alive: with 20k client connections in a
worker that is a pause of tens of milliseconds every few seconds, seen as a request's p99.
So: collect rarely, and keep what was alive after startup out of the collections (gc.freeze).
"""

import gc

# Young-generation threshold (CPython's default: 700 allocations), then the two older ones.
GC_THRESHOLD = (50000, 20, 20)


def tune_gc():
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
