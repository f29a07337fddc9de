"""Brokers that misbehave, on loopback: one that accepts connections and never answers (a hung
Redis, a half-open connection), and a relay to a real Redis that can hold every byte (a network
partition) or deliver each reply late (a slow broker)."""

import socket
import threading
import time
from collections.abc import Callable


def serve(listener: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    """Hand each connection the listener accepts to handle(), in a thread, until it is closed."""

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            handle(connection)

    threading.Thread(target=accept, daemon=True).start()


class HungServer:
    """Accepts every connection, reads what is sent and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        # Kept open and never read, as by a stopped Redis.
        self.connections: list[socket.socket] = []
        serve(self.listener, self.connections.append)

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


class PausableProxy:
    """A TCP relay on loopback to a Redis: pause() holds every byte both ways without closing
    anything, as a network partition does; resume() lets them through again, none lost. With
    `reply_delay`, every chunk the Redis sends back arrives that many seconds late."""

    def __init__(self, upstream_port: int, *, reply_delay: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.reply_delay = reply_delay
        self.flowing = threading.Event()
        self.flowing.set()
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        serve(self.listener, self._relay)

    def pause(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        for source, sink, delay in ((client, upstream, 0), (upstream, client, self.reply_delay)):
            threading.Thread(target=self._pump, args=(source, sink, delay), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while data := source.recv(65536):
                self.flowing.wait()
                time.sleep(delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def close(self) -> None:
        self.listener.close()
