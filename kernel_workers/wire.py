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

  server -> zygote       hello_ack, fork (+ 3 fds by SCM_RIGHTS: control, stdout, stderr; a 4th,
                         a template's fork link), preload (``modules``: learned preload)
  zygote -> server       hello, forked, exited, preloaded (``module``, ``ok``, ``rss_mb``)
  (a template, an environment after INIT, speaks the zygote's side: kernel_workers.init)
  server -> environment  init (body: the function's pickle; ``buffers_dir``; ``template``: become
                         a snapshot after INIT; ``snapshot``: forked from one, no body),
                         invoke (body: payload; ``buffers``: its out-of-band buffers' file, if any),
                         result_file (``ok``: the result's file is made, to write over)
  environment -> server  ready (``imported``: modules INIT imported; a template's ``unsafe``),
                         init_error, result (body: result; ``buffers``: its out-of-band
                         buffers' file, if any), error (body: pickled exception or empty),
                         result_file (``request_id``, ``nbytes``: make the result's file; only
                         when ``init`` said ``ask_files``)
  server -> environment  lease (then 3 fds: the lease socket, its stdout's and stderr's read ends),
                         revoke (give the lease back after what runs)
  environment -> server  lease_ended, buffers_spent (a leased invocation's argument file is spent)
  client <-> environment over a lease socket: invoke, cancel / done, ended, not_started
                         (kernel_workers.lease; its journal's records: kernel_workers.journal)
  client <-> server      see jupyter_faas.server.protocol.session (both carriers), and the direct
                         socket's lease / leases (jupyter_faas.server.protocol.direct)

This module is the only place frames are packed or parsed: :class:`FrameDecoder` is the
one incremental parser every stream reader uses (environment and zygote links, the
direct socket on both ends, the runtime); a websocket message is one whole frame
(:func:`unpack`).
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


def pack_raw(header: bytes, body: bytes = b"") -> bytes:
    """One frame from a header already encoded as JSON (it must carry ``k`` and ``v``): for a
    writer that reuses one encoding in two frames (kernel_workers.lease)."""
    return b"".join((_LENGTHS.pack(len(header), len(body)), header, body))


def lengths(prefix: bytes) -> tuple[int, int]:
    """(header length, body length) from the first :data:`HEADER_SIZE` bytes."""
    header_len, body_len = _LENGTHS.unpack_from(prefix)
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


class FrameDecoder:
    """The one incremental frame parser (sans-I/O, like h11): bytes in, whole frames out.

    Every reader of frames uses it, whatever carries the bytes: a blocking socket
    (:class:`BlockingChannel`), an asyncio protocol (the server's links to the zygote,
    to each environment and to direct clients).  Two ways to give it bytes:

    - ``feed(data)``: a copy of ``data`` is taken;
    - ``get_buffer()`` then ``buffer_updated(n)`` (asyncio's ``BufferedProtocol`` shape):
      the carrier reads straight into the decoder's memory, and a body too large for
      the scratch buffer is read straight into a buffer of its own size (no copy).

    Then ``next_frame()`` returns ``(header, body)`` for each complete frame in order,
    or None.  ``body`` is ``bytes``, or for a large body its own ``bytearray``.
    ``max_frame`` (bytes, prefix included; None: no limit) refuses a frame from its
    length prefix, before its bytes are read.  Raises :class:`ProtocolError` for bytes
    that are not a frame of this protocol version.
    """

    SCRATCH = 64 * 1024

    def __init__(self, max_frame: int | None = None, scratch: int = SCRATCH):
        self.max_frame = max_frame
        self._buf = bytearray(scratch)
        self._end = 0                        # bytes of _buf holding data
        self._header: dict | None = None     # the frame whose large body is arriving
        self._body: bytearray | None = None
        self._have = 0
        self._frames: list = []
        self._next = 0

    # ---- input -----------------------------------------------------------------------------

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next bytes go (at least one byte long)."""
        if self._body is not None:
            return memoryview(self._body)[self._have:]
        if self._end == len(self._buf):  # a header larger than the buffer: grow it
            self._buf.extend(bytes(len(self._buf)))
        return memoryview(self._buf)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of the last :meth:`get_buffer`."""
        if self._body is not None:
            self._have += nbytes
            if self._have == len(self._body):
                self._frames.append((self._header, self._body))
                self._header = self._body = None
            return
        self._end += nbytes
        self._parse()

    def feed(self, data) -> None:
        """Take a copy of ``data`` (bytes-like)."""
        view = memoryview(data).cast("B")
        while view.nbytes:
            target = self.get_buffer()
            n = min(target.nbytes, view.nbytes)
            target[:n] = view[:n]
            del target
            view = view[n:]
            self.buffer_updated(n)

    # ---- output ----------------------------------------------------------------------------

    def next_frame(self) -> tuple[dict, bytes | bytearray] | None:
        """The oldest complete frame not yet returned, or None."""
        frames = self._frames
        if self._next < len(frames):
            frame = frames[self._next]
            self._next += 1
            if self._next == len(frames):
                frames.clear()
                self._next = 0
            return frame
        return None

    def holds(self) -> bool:
        """Whether any byte arrived that no frame returned yet (a whole frame or part of one)."""
        return self._next < len(self._frames) or self._body is not None or self._end > 0

    def missing(self) -> int:
        """Bytes still to come before the next frame is complete (0 when one is ready)."""
        if self._next < len(self._frames):
            return 0
        if self._body is not None:
            return len(self._body) - self._have
        if self._end < HEADER_SIZE:
            return HEADER_SIZE - self._end
        header_len, body_len = _LENGTHS.unpack_from(self._buf, 0)
        return HEADER_SIZE + header_len + body_len - self._end

    # ---- parsing ---------------------------------------------------------------------------

    def _parse(self) -> None:
        buf, at, size = self._buf, 0, self._end
        try:
            while size - at >= HEADER_SIZE:
                header_len, body_len = lengths(buf[at:at + HEADER_SIZE])
                if self.max_frame is not None and HEADER_SIZE + header_len + body_len > self.max_frame:
                    raise FrameTooLarge(HEADER_SIZE + header_len + body_len, self.max_frame)
                start = at + HEADER_SIZE + header_len
                if size < start:
                    break
                end = start + body_len
                if size < end and end - at > len(buf):
                    # Will not fit: the rest of the body goes into a buffer of its own.
                    self._header = parse_header(buf[at + HEADER_SIZE:start])
                    self._body = bytearray(body_len)
                    self._have = size - start
                    self._body[:self._have] = buf[start:size]
                    at = size
                    break
                if size < end:
                    break
                header = parse_header(buf[at + HEADER_SIZE:start])
                self._frames.append((header, bytes(buf[start:end]) if body_len else b""))
                at = end
        finally:
            if at:  # keep the partial frame at the front
                buf[:size - at] = buf[at:size]
                self._end = size - at


class FrameTooLarge(ProtocolError):
    """A frame's length prefix says it is larger than the reader takes."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"a frame of {size} bytes is larger than this link takes ({limit} bytes)")
        self.size, self.limit = size, limit


class BlockingChannel:
    """Frames over a blocking stream socket (the zygote, environment and direct-client side).

    Reads are buffered: one ``recv`` usually brings a whole small frame (or several),
    instead of one system call for its prefix, one for its header and one for its body.
    Unbuffered (``buffered=False``), it reads no byte past the frame it is reading: for a
    socket that is also ``select()``ed on or carries file descriptors (the zygote's),
    where a read-ahead would hide a waiting frame or drop the descriptors.
    """

    def __init__(self, sock, buffered: bool = True):
        self.sock = sock
        self._decoder = FrameDecoder()
        #: False: read no byte past the frame being read (descriptors may follow it)
        self.buffered = buffered

    def recv(self) -> tuple[dict, bytes | bytearray]:
        """The next frame; raises EOFError when the peer closed, ProtocolError on bad bytes."""
        decoder = self._decoder
        while True:
            frame = decoder.next_frame()
            if frame is not None:
                return frame
            self.fill()

    def pending(self) -> tuple[dict, bytes | bytearray] | None:
        """The next frame if it has already arrived whole (no read), else None."""
        return self._decoder.next_frame()

    def pending_bytes(self) -> bool:
        """Whether bytes were read that no :meth:`recv`/:meth:`pending` returned yet."""
        return self._decoder.holds()

    def fill(self) -> None:
        """One read from the socket into the decoder (blocks until some bytes come)."""
        decoder = self._decoder
        target = decoder.get_buffer()
        want = target.nbytes if self.buffered else min(target.nbytes, decoder.missing())
        got = self.sock.recv_into(target, want)
        del target
        if not got:
            raise EOFError("peer closed the channel")
        decoder.buffer_updated(got)

    def send(self, kind: str, body: bytes = b"", **fields) -> None:
        prefix, payload = pack_parts(kind, body, **fields)
        if len(payload) < 65536:
            self.sock.sendall(prefix + bytes(payload))
        else:
            self.sock.sendall(prefix)
            self.sock.sendall(payload)
