"""A TCP proxy on 127.0.0.1 that adds a fixed one-way delay, to measure S3
clients at a real-world round-trip time on one machine.

    python bench/delay_proxy.py LISTEN_PORT UPSTREAM_PORT ONE_WAY_MS

Every byte is forwarded ONE_WAY_MS after it arrived, in order, in both
directions, without limiting throughput. A new connection also costs the
round trip of its TCP handshake: the first bytes a client sends are
forwarded only one round trip after it connected (plus the one-way delay),
as they would reach a distant server. Each direction pauses reading while
more than BUFFER bytes wait to be written, so memory stays bounded.

It acknowledges every segment at once (TCP_QUICKACK): s3s-fs does not set
TCP_NODELAY, so the last piece of each of its answers would otherwise wait
for a delayed acknowledgement (up to 40 ms on Linux), a quirk of this test
server and of loopback that real S3 endpoints do not have, and that would
slow both clients alike.
"""

import asyncio
import collections
import socket
import sys

BUFFER = 8 << 20


class Pipe(asyncio.Protocol):
    """One direction's receiving end: forwards what it gets to `peer` after the delay."""

    def __init__(self, delay, not_before=0.0):
        self.delay = delay
        self.not_before = not_before
        self.peer = None  # the Pipe of the other direction
        self.transport = None
        self.pending = []  # data due before the peer was connected
        self.queue = collections.deque()  # (due, data), in arrival order
        self.timer = None
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=BUFFER)
        self.sock = transport.get_extra_info("socket")
        self.quickack()

    def quickack(self):
        # not sticky: the kernel may fall back to delayed acks, so set it again after each read
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except (OSError, AttributeError):
            pass

    def data_received(self, data):
        self.quickack()
        loop = asyncio.get_running_loop()
        self.queue.append((max(loop.time() + self.delay, self.not_before), data))
        if self.timer is None:
            self.timer = loop.call_at(self.queue[0][0], self._due)

    def _due(self):
        """Forwards, in order, everything whose time has come (timers of
        equal times may run in any order, so one queue keeps the order)."""
        loop = asyncio.get_running_loop()
        self.timer = None
        while self.queue and self.queue[0][0] <= loop.time():
            self._forward(self.queue.popleft()[1])
        if self.queue:
            self.timer = loop.call_at(self.queue[0][0], self._due)

    def _forward(self, data):
        if self.peer is None or self.peer.transport is None:
            self.pending.append(data)
        elif not self.peer.transport.is_closing():
            self.peer.transport.write(data)

    def flush(self):
        for data in self.pending:
            self.peer.transport.write(data)
        self.pending = []

    def eof_received(self):
        self.closed = True
        self._close_when_sent()
        return True

    def _close_when_sent(self):
        """Closes the peer once everything received before the end is forwarded."""
        if self.queue or self.timer is not None:
            asyncio.get_running_loop().call_later(max(self.delay, 0.001), self._close_when_sent)
        elif self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def connection_lost(self, exc):
        if not self.closed:
            self.closed = True
            self._close_when_sent()

    # flow control: our transport's buffer is full, stop reading the peer
    def pause_writing(self):
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self):
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


async def serve(listen, upstream, delay):
    loop = asyncio.get_running_loop()

    def client_side():
        # the client's first bytes wait for the handshake's round trip
        down = Pipe(delay, not_before=loop.time() + 2 * delay + delay)

        async def connect():
            try:
                _, up = await loop.create_connection(lambda: Pipe(delay), "127.0.0.1", upstream)
            except OSError:
                if down.transport is not None:
                    down.transport.close()
                return
            up.peer, down.peer = down, up
            down.flush()

        loop.create_task(connect())
        return down

    server = await loop.create_server(client_side, "127.0.0.1", listen, backlog=256)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen, upstream, ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    try:
        asyncio.run(serve(listen, upstream, ms / 1000))
    except KeyboardInterrupt:
        pass
