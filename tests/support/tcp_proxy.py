"""A TCP proxy on loopback whose connections a test can reset or silence, as network faults would."""

import socket
import struct
import threading

from tests.support.processes import free_port


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target` ("host:port"), one pair of threads per connection."""

    def __init__(self, target: str):
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._connections: list[tuple[socket.socket, socket.socket]] = []
        self._cutting = threading.Event()  # set while reset() runs: pumps that wake then must not pass on a FIN
        self._silenced: set[socket.socket] = set()  # sockets whose data goes nowhere
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if source not in self._silenced:
                    sink.sendall(data)
            if not self._cutting.is_set() and source not in self._silenced:
                sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # reset, or the other side went away

    def reset(self) -> int:
        """Cut every open connection with a TCP reset on both sides; new connections still get through.
        Returns how many were cut."""
        with self._lock:
            connections, self._connections = self._connections, []
            self._cutting.set()
            sockets = [sock for pair in connections for sock in pair]
            for sock in sockets:
                try:
                    # SO_LINGER with a zero timeout makes close() send RST instead of FIN; shutting down
                    # the reading side first wakes the pump blocked in recv(), which would keep the socket open.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass  # that side had already gone
            for sock in sockets:
                sock.close()
            self._cutting.clear()
        return len(connections)

    def silence(self) -> int:
        """Drop everything sent on the open connections from now on, both ways, and never close them:
        the peers see a connection that is open but silent, as when a node vanishes. New
        connections still get through. Returns how many were silenced."""
        with self._lock:
            silenced = [pair for pair in self._connections if pair[0] not in self._silenced]
            self._silenced.update(sock for pair in silenced for sock in pair)
        return len(silenced)

    def close(self) -> None:
        self._listener.close()
        self.reset()
