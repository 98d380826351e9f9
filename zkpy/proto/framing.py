"""Length-prefixed framing of the client port, and four-letter-word detection.

Owns: ``frame`` (add the int32 big-endian length), ``FrameDecoder`` (split a byte stream into
frame bodies, enforcing jute.maxbuffer) and ``is_four_letter_word``. Pure: bytes in, bodies out,
no sockets. Imported by the connection/worker layer and tests.

Wire grammar (NIOServerCnxn.readLength / BinaryInputArchive)::

    stream := frame*
    frame  := int32 len, len bytes       ; 0 <= len <= jute.maxbuffer, else "Len error"

A brand-new connection whose first four bytes spell a four-letter word (``ruok`` read as an
int32) is not framed at all: the server answers in plain text and closes. The caller checks
``is_four_letter_word`` on those first four bytes *before* feeding a FrameDecoder, because as a
length every 4lw is far above jute.maxbuffer and would be rejected.
"""

import struct

from zkpy.errors import ClientProtocolError
from zkpy import compiled

__all__ = ["frame", "FrameDecoder", "is_four_letter_word", "FOUR_LETTER_WORDS",
           "JUTE_MAXBUFFER_DEFAULT"]

# jute.maxbuffer default (0xfffff), BinaryInputArchive.maxBuffer. The configured value belongs
# to zkpy.config; this is only the fallback for tests and tools.
JUTE_MAXBUFFER_DEFAULT = 0xFFFFF

_LEN = struct.Struct(">i")
_pack_len = _LEN.pack
_unpack_len = _LEN.unpack_from


def frame(body):
    """Prefix `body` with its int32 big-endian length."""
    return _pack_len(len(body)) + bytes(body)


class FrameDecoder:
    """Incremental splitter: feed() any chunks, get complete frame bodies back.

    Holds at most one partial frame. A length < 0 or > max_len raises ClientProtocolError as
    soon as the 4 length bytes are in, before any body bytes are buffered, so a hostile peer
    cannot make us hold more than max_len + 3 bytes. After an error the decoder is dead: the
    connection must be closed (reference.md 1.1, "Len error").
    """

    __slots__ = ("max_len", "_buf", "_need", "_failed")

    def __init__(self, max_len=JUTE_MAXBUFFER_DEFAULT):
        if max_len < 0:
            raise ValueError("max_len must be >= 0, got %d" % max_len)
        self.max_len = max_len
        self._buf = bytearray()
        self._need = -1          # body length of the frame in progress, -1 = reading the length
        self._failed = None

    @property
    def buffered(self):
        """Bytes received but not yet returned as a frame."""
        return len(self._buf)

    def feed(self, data):
        """Append `data`; return the list of complete frame bodies (bytes), oldest first."""
        if self._failed is not None:
            raise ClientProtocolError(self._failed)
        buf = self._buf
        if buf or type(data) is not bytes:
            buf += data
            src = buf
        else:
            src = data  # nothing held back: the frames are cut from the chunk itself
            if _split_frames is not None:
                got = _split_frames(data, self._need, self.max_len)
                if got is not None:  # else a bad length, which the loop below reports
                    out, off, self._need = got
                    if off < len(data):
                        buf += memoryview(data)[off:]  # the start of a frame still to come
                    return out
        out = []
        off = 0
        end = len(src)
        need = self._need
        max_len = self.max_len
        while True:
            if need < 0:
                if end - off < 4:
                    break
                (need,) = _unpack_len(src, off)
                if need < 0 or need > max_len:
                    self._failed = "frame length %d exceeds jute.maxbuffer=%d" % (need, max_len)
                    self._buf = bytearray()
                    raise ClientProtocolError(self._failed)
                off += 4
            if end - off < need:
                break
            out.append(bytes(src[off:off + need]) if src is buf else src[off:off + need])
            off += need
            need = -1
        if src is buf:
            # One deletion per feed, not per frame: many small frames in one chunk stay linear.
            if off:
                del buf[:off]
        elif off < end:
            buf += memoryview(data)[off:]  # the start of a frame still to come
        self._need = need
        return out


# FourLetterCommands (zookeeper 3.8.0 jar): the whole set the server recognises before its
# whitelist check. Which ones are enabled is zkpy.config's and zkpy.admin's business.
FOUR_LETTER_WORDS = frozenset((
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srvr", "srst",
    "stat", "wchc", "wchp", "wchs", "mntr", "isro", "hash",
))
_FOUR_LETTER_BYTES = {w.encode("ascii"): w for w in FOUR_LETTER_WORDS}

# FourLetterCommands.telnetCloseCmd = -720899 = 0xfff4fffd: a telnet client's Ctrl-C (IAC IP).
# The Java server just closes the connection when the first int is this value.
TELNET_CLOSE = b"\xff\xf4\xff\xfd"


def is_four_letter_word(first4):
    """The 4lw named by a connection's first four bytes, "telnet close" for TELNET_CLOSE,
    or None when they are an ordinary frame length. ``stmk`` is followed by an 8-byte long
    (the trace mask) that the caller must read before answering."""
    first4 = bytes(first4[:4])
    word = _FOUR_LETTER_BYTES.get(first4)
    if word is None and first4 == TELNET_CLOSE:
        return "telnet close"
    return word


# The compiled twin of feed's loop (zkpy.proto._fastcodec; not loaded under ZKPY_PURE=1).
_split_frames = getattr(compiled.load("_fastcodec"), "split_frames", None)
