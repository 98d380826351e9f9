"""zkpy.proto.framing: length prefix, jute.maxbuffer enforcement, 4lw detection.

Behaviour copied from NIOServerCnxn.readLength ("Len error" for len < 0 or > jute.maxbuffer)
and FourLetterCommands (3.8.0 jar).
"""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkpy.errors import ClientProtocolError
from zkpy.proto.framing import (FOUR_LETTER_WORDS, JUTE_MAXBUFFER_DEFAULT, FrameDecoder, frame,
                                is_four_letter_word)


def test_frame_prefixes_big_endian_length():
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(memoryview(b"")) == b"\x00\x00\x00\x00"


def test_decoder_returns_complete_frames_only():
    d = FrameDecoder(100)
    assert d.feed(frame(b"one") + frame(b"") + b"\x00\x00") == [b"one", b""]
    assert d.buffered == 2
    assert d.feed(b"\x00\x02x") == []
    assert d.feed(b"y" + frame(b"z")) == [b"xy", b"z"]
    assert d.buffered == 0


def test_frame_of_exactly_max_len_is_accepted():
    d = FrameDecoder(8)
    assert d.feed(frame(b"12345678")) == [b"12345678"]


def test_oversized_frame_names_the_limit():
    d = FrameDecoder(JUTE_MAXBUFFER_DEFAULT)
    with pytest.raises(ClientProtocolError,
                       match=r"^frame length 1048576 exceeds jute.maxbuffer=1048575$"):
        d.feed(struct.pack(">i", 1048576))
    # The decoder is dead afterwards: the connection must be closed.
    with pytest.raises(ClientProtocolError):
        d.feed(frame(b"ok"))


def test_negative_length_is_rejected():
    with pytest.raises(ClientProtocolError, match="frame length -1 exceeds"):
        FrameDecoder(100).feed(b"\xff\xff\xff\xff")


def test_oversized_length_fails_before_the_body_arrives():
    d = FrameDecoder(10)
    d.feed(b"\x00\x00")
    with pytest.raises(ClientProtocolError):
        d.feed(b"\x00\x0b")


@settings(max_examples=150, deadline=None)
@given(bodies=st.lists(st.binary(max_size=40), max_size=8), data=st.data())
def test_whole_input_and_any_chunking_give_the_same_frames(bodies, data):
    stream = b"".join(frame(b) for b in bodies)
    assert FrameDecoder(64).feed(stream) == bodies
    byte_at_a_time = FrameDecoder(64)
    got = []
    for i in range(len(stream)):
        got += byte_at_a_time.feed(stream[i:i + 1])
    assert got == bodies
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunked, got, prev = FrameDecoder(64), [], 0
    for c in cuts + [len(stream)]:
        got += chunked.feed(memoryview(stream)[prev:c])
        prev = c
    assert got == bodies
    assert chunked.buffered == 0


@settings(max_examples=150, deadline=None)
@given(blob=st.binary(max_size=80))
def test_fuzz_whole_vs_byte_at_a_time_agree_on_frames_and_errors(blob):
    def run(chunks):
        d, out = FrameDecoder(16), []
        try:
            for c in chunks:
                out += d.feed(c)
        except ClientProtocolError as e:
            return out, str(e)
        return out, None
    assert run([blob]) == run([blob[i:i + 1] for i in range(len(blob))])


@pytest.mark.parametrize("word", sorted(FOUR_LETTER_WORDS))
def test_four_letter_words_are_recognised(word):
    assert is_four_letter_word(word.encode()) == word
    assert is_four_letter_word(memoryview(word.encode() + b"\n")) == word


def test_known_four_letter_word_set_matches_zookeeper():
    assert FOUR_LETTER_WORDS == {
        "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srvr",
        "srst", "stat", "wchc", "wchp", "wchs", "mntr", "isro", "hash"}


def test_ordinary_lengths_and_unknown_words_are_not_4lw():
    assert is_four_letter_word(struct.pack(">i", 44)) is None   # a ConnectRequest length
    assert is_four_letter_word(b"RUOK") is None
    assert is_four_letter_word(b"ruo") is None
    assert is_four_letter_word(struct.pack(">i", -720899)) == "telnet close"


@settings(max_examples=150, deadline=None)
@given(bodies=st.lists(st.binary(max_size=40), max_size=8), data=st.data())
def test_bytes_chunks_cut_from_the_chunk_or_the_buffer_give_the_same_frames(bodies, data):
    """A bytes chunk with nothing held back is cut directly, anything else goes through the
    buffer: the frames (bytes) and what is held back are the same at every step."""
    stream = b"".join(frame(b) for b in bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    direct, buffered, got, prev = FrameDecoder(64), FrameDecoder(64), [], 0
    for c in cuts + [len(stream)]:
        out = direct.feed(stream[prev:c])
        assert all(type(b) is bytes for b in out)
        assert out == buffered.feed(bytearray(stream[prev:c]))
        assert direct.buffered == buffered.buffered
        got += out
        prev = c
    assert got == bodies
    assert direct.buffered == 0
