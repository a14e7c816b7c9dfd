"""Every frame that crosses a process boundary, defined once.

Three links use these frames:

    client (kernel)  <-- websocket -->  server  <-- socketpair -->  zygote
                                           ^                          | fork
                                           +------ socketpair ----> environment

A frame is ``u32 header length | u32 body length | JSON header | body bytes``.
The header is a small JSON object that always carries ``"k"`` (the frame kind)
and ``"v"`` (the protocol version); the body is opaque bytes (a pickle or
JSON payload).  JSON headers, never pickles, because the server must not
unpickle anything an execution environment (which runs user code) wrote.

Kinds, by link:

  server -> zygote       hello_ack, fork (+ 3 fds by SCM_RIGHTS: control, stdout, stderr)
  zygote -> server       hello, forked, exited
  server -> environment  init (body: the function's pickle; ``buffers_dir``),
                         invoke (body: payload; ``buffers``: its out-of-band buffers' file, if any)
  environment -> server  ready, init_error, result (body: result; ``buffers``: its out-of-band
                         buffers' file, if any), error (body: pickled exception or empty)
  client <-> server      see jupyter_faas.client.session and jupyter_faas.server.websocket

This module is the only place frames are packed or parsed.
"""

from __future__ import annotations

import json
import struct

#: 2: out-of-band pickle buffers in files (``buffers`` descriptors; see kernel_workers.buffers)
PROTOCOL_VERSION = 2

_LENGTHS = struct.Struct("!II")
HEADER_SIZE = _LENGTHS.size
#: A header is metadata, never data; a huge one means a corrupt or hostile peer.
MAX_HEADER_BYTES = 1 << 20


class ProtocolError(Exception):
    """A peer sent bytes that are not a frame of this protocol version."""


def pack(kind: str, body: bytes = b"", **fields) -> bytes:
    """One frame as bytes."""
    fields["k"] = kind
    fields["v"] = PROTOCOL_VERSION
    header = json.dumps(fields, separators=(",", ":")).encode()
    return b"".join((_LENGTHS.pack(len(header), len(body)), header, body))


def pack_parts(kind: str, body: bytes | memoryview = b"", **fields) -> list:
    """Like :func:`pack` but returns ``[prefix, body]`` so a large body is not copied."""
    fields["k"] = kind
    fields["v"] = PROTOCOL_VERSION
    header = json.dumps(fields, separators=(",", ":")).encode()
    return [_LENGTHS.pack(len(header), len(body)) + header, body]


def lengths(prefix: bytes) -> tuple[int, int]:
    """(header length, body length) from the first :data:`HEADER_SIZE` bytes."""
    header_len, body_len = _LENGTHS.unpack(prefix)
    if header_len > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header of {header_len} bytes is larger than {MAX_HEADER_BYTES}")
    return header_len, body_len


def parse_header(raw: bytes) -> dict:
    """Decode a header and check its protocol version."""
    try:
        header = json.loads(bytes(raw))
    except ValueError as exc:
        raise ProtocolError(f"frame header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or "k" not in header:
        raise ProtocolError("frame header has no kind")
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version mismatch: peer speaks {version}, this side speaks "
            f"{PROTOCOL_VERSION}; install the same jupyter_faas version on both sides"
        )
    return header


def unpack(frame: bytes | memoryview) -> tuple[dict, memoryview]:
    """Split one whole frame (as received in a websocket message) into (header, body)."""
    view = memoryview(frame)
    if len(view) < HEADER_SIZE:
        raise ProtocolError("frame shorter than its length prefix")
    header_len, body_len = lengths(view[:HEADER_SIZE])
    end = HEADER_SIZE + header_len
    if len(view) != end + body_len:
        raise ProtocolError("frame length does not match its prefix")
    return parse_header(view[HEADER_SIZE:end]), view[end:]


class BlockingChannel:
    """Frames over a blocking stream socket (the zygote, environment and direct-client side).

    Reads are buffered: one ``recv`` usually brings a whole small frame (or several),
    instead of one system call for its prefix, one for its header and one for its body.
    """

    READ_SIZE = 1 << 16

    def __init__(self, sock, buffered: bool = True):
        self.sock = sock
        self._buf = bytearray()
        # Unbuffered for a socket that is also select()ed on or carries file descriptors
        # (the zygote's): a read-ahead would hide a waiting frame, or drop the fds.
        self._read_size = self.READ_SIZE if buffered else 0

    def _fill(self, n: int) -> None:
        """Read until at least ``n`` bytes are buffered."""
        buf = self._buf
        while len(buf) < n:
            missing = n - len(buf)
            if missing > self._read_size:
                # A large body: read it in place rather than through the small buffer.
                start = len(buf)
                buf.extend(bytes(missing))
                view = memoryview(buf)
                try:
                    got = start
                    while got < n:
                        r = self.sock.recv_into(view[got:], n - got)
                        if r == 0:
                            del view
                            del buf[got:]
                            raise EOFError("peer closed the channel")
                        got += r
                except BaseException:
                    if len(buf) > got:
                        del view
                        del buf[got:]
                    raise
                return
            data = self.sock.recv(self.READ_SIZE)
            if not data:
                raise EOFError("peer closed the channel")
            buf += data

    def recv(self) -> tuple[dict, bytearray]:
        self._fill(HEADER_SIZE)
        header_len, body_len = lengths(bytes(self._buf[:HEADER_SIZE]))
        end = HEADER_SIZE + header_len + body_len
        self._fill(end)
        buf = self._buf
        header = parse_header(bytes(buf[HEADER_SIZE:HEADER_SIZE + header_len]))
        if len(buf) == end:
            # The usual case: this frame is all there is; hand over the buffer, no copy.
            self._buf = bytearray()
            del buf[:HEADER_SIZE + header_len]
            return header, buf
        body = buf[HEADER_SIZE + header_len:end]
        del buf[:end]
        return header, body

    def send(self, kind: str, body: bytes = b"", **fields) -> None:
        prefix, payload = pack_parts(kind, body, **fields)
        if len(payload) < 65536:
            self.sock.sendall(prefix + bytes(payload))
        else:
            self.sock.sendall(prefix)
            self.sock.sendall(payload)
