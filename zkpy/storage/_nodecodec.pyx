# cython: language_level=3
# The compiled twin of nodecodec.py: the same source, compiled. See nodecodec.py.
include "nodecodec.py"
