# cython: language_level=3, embedsignature=True
"""Two socket options read straight from libzmq: ``ZMQ_EVENTS`` and ``ZMQ_RCVMORE``.

``Channel`` reads them several times per message. pyzmq's ``Socket.get`` first looks the option
up in an ``Enum`` (about 0.5 us, more than the read itself for ``ZMQ_RCVMORE``), so this calls
``zmq_getsockopt`` of the libzmq pyzmq loaded, through a pointer ``zmsg.transport.sockopt``
resolves and checks once (``bind``). It needs no libzmq headers or library to build.

Safety: the socket's handle comes from pyzmq at each call (``Socket.underlying``: NULL once
pyzmq has closed it), and any case this does not handle (not bound, closed, an error) goes to
pyzmq's own ``get``, which returns the value or raises the ``ZMQError`` it always would.
"""

ctypedef int (*getsockopt_fn)(void *, int, void *, size_t *) noexcept nogil

cdef getsockopt_fn _getsockopt = NULL

DEF C_ZMQ_RCVMORE = 13
DEF C_ZMQ_EVENTS = 15


def bind(size_t getsockopt_address) -> None:
    """Use the ``zmq_getsockopt`` at this address (0: unbind, every read goes to pyzmq)."""
    global _getsockopt
    _getsockopt = <getsockopt_fn><void *>getsockopt_address


def bound() -> bool:
    return _getsockopt != NULL


cdef inline object _read_int(object sock, int option):
    cdef size_t handle = sock.underlying
    cdef int value = 0
    cdef size_t size = sizeof(int)
    if handle != 0 and _getsockopt != NULL:
        if _getsockopt(<void *>handle, option, &value, &size) == 0:
            return value
    return sock.get(option)


def events(sock) -> int:
    """``sock.get(zmq.EVENTS)``, faster."""
    return _read_int(sock, C_ZMQ_EVENTS)


def rcvmore(sock) -> int:
    """``sock.get(zmq.RCVMORE)``, faster."""
    return _read_int(sock, C_ZMQ_RCVMORE)
