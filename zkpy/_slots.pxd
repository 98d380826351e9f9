# cython: language_level=3
"""Fields of a __slots__ object by offset, for the compiled modules that build or copy znode
records (zkpy.storage._nodecodec, zkpy.proto._fastcodec). Inline: compiled into each of them.

A __slots__ member is a PyObject* at a fixed offset in the instance, which its member
descriptor names; storing there directly skips the class's Python __init__ (a frame and one
attribute store per field)."""

from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    PyTypeObject PyMemberDescr_Type


cdef inline bint slot_offsets(cls, Py_ssize_t* out, Py_ssize_t n) except -1:
    """out[0:n] = the offsets of cls's __slots__ fields, in __slots__ order; False (out
    unspecified) unless cls declares exactly n of them, each a plain member slot."""
    slots = cls.__dict__.get("__slots__", ())
    if len(slots) != n:
        return False
    for i, name in enumerate(slots):
        d = cls.__dict__.get(name)
        if d is None or (<PyObject*>d).ob_type is not &PyMemberDescr_Type:
            return False
        out[i] = (<PyMemberDescrObject*><PyObject*>d).d_member.offset
    return True


cdef inline PyObject* slot_get(obj, Py_ssize_t off):
    """The field at `off` (borrowed; NULL when never set)."""
    return (<PyObject**>((<char*><PyObject*>obj) + off))[0]


cdef inline void slot_init(obj, Py_ssize_t off, value):
    """Store `value` in an empty field of a just-allocated object."""
    Py_INCREF(value)
    (<PyObject**>((<char*><PyObject*>obj) + off))[0] = <PyObject*>value
