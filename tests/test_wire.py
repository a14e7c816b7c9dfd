"""The one frame decoder (kernel_workers.wire.FrameDecoder) and the blocking channel over it."""

from __future__ import annotations

import json
import socket
import struct
import threading

import pytest

from kernel_workers import wire


def frames():
    return [wire.pack("a", b""), wire.pack("b", b"x" * 10, n=1),
            wire.pack("c", bytes(range(256)) * 1000, big=True), wire.pack("d", b"tail")]


def decode_all(decoder):
    out = []
    frame = decoder.next_frame()
    while frame is not None:
        out.append((frame[0]["k"], bytes(frame[1])))
        frame = decoder.next_frame()
    return out


EXPECTED = [("a", b""), ("b", b"x" * 10), ("c", bytes(range(256)) * 1000), ("d", b"tail")]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_feed_in_any_chunking_gives_the_same_frames(chunk):
    data = b"".join(frames())
    decoder = wire.FrameDecoder(scratch=1024)  # small scratch: the large body gets its own buffer
    out = []
    for i in range(0, len(data), chunk):
        decoder.feed(data[i:i + chunk])
        out += decode_all(decoder)
    assert out == EXPECTED
    assert decoder.missing() == wire.HEADER_SIZE


def test_buffered_protocol_style_reads_go_straight_into_the_decoder():
    data = memoryview(b"".join(frames()))
    decoder = wire.FrameDecoder(scratch=1024)
    out = []
    while data.nbytes:
        target = decoder.get_buffer()
        n = min(target.nbytes, data.nbytes, 3000)
        target[:n] = data[:n]
        del target
        data = data[n:]
        decoder.buffer_updated(n)
        out += decode_all(decoder)
    assert out == EXPECTED


def test_bad_bytes_are_protocol_errors_naming_the_fault():
    with pytest.raises(wire.ProtocolError, match="peer speaks 99, this side speaks"):
        header = json.dumps({"k": "x", "v": 99}).encode()
        wire.FrameDecoder().feed(struct.pack("!II", len(header), 0) + header)
    with pytest.raises(wire.ProtocolError, match="not JSON"):
        wire.FrameDecoder().feed(struct.pack("!II", 3, 0) + b"{{{")
    with pytest.raises(wire.ProtocolError, match="larger than"):
        wire.FrameDecoder().feed(struct.pack("!II", wire.MAX_HEADER_BYTES + 1, 0))


def test_max_frame_refuses_a_frame_from_its_length_prefix():
    decoder = wire.FrameDecoder(max_frame=100)
    with pytest.raises(wire.FrameTooLarge) as info:
        decoder.feed(struct.pack("!II", 10, 10_000))  # the body has not arrived: refused anyway
    assert info.value.limit == 100 and info.value.size == 10_000 + 10 + wire.HEADER_SIZE


def test_an_unbuffered_channel_reads_no_byte_past_its_frame():
    """The zygote's channel: what follows a frame (here: bytes it must read itself, as it
    does for file descriptors) stays in the socket."""
    a, b = socket.socketpair()
    try:
        a.sendall(wire.pack("fork", b"", env_id="e1") + b"F-and-more")
        channel = wire.BlockingChannel(b, buffered=False)
        header, _ = channel.recv()
        assert header["k"] == "fork" and header["env_id"] == "e1"
        assert b.recv(100) == b"F-and-more"
    finally:
        a.close()
        b.close()


def test_a_blocking_channel_carries_large_bodies_whole():
    a, b = socket.socketpair()
    body = bytes(range(256)) * 40_000  # 10 MB: larger than any buffer the socket holds
    try:
        sender = threading.Thread(target=lambda: wire.BlockingChannel(a).send("big", body, i=1))
        sender.start()
        header, got = wire.BlockingChannel(b).recv()
        sender.join()
        assert header == {"k": "big", "v": wire.PROTOCOL_VERSION, "i": 1} and bytes(got) == body
        a.close()
        with pytest.raises(EOFError):
            wire.BlockingChannel(b).recv()
    finally:
        b.close()
