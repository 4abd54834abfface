"""udp-flood's Twisted server: counts datagrams, answers `count?` with
the count. Run by the harness as `python udp_sink.py 127.0.0.1:0`."""

import socket
import sys

from twisted.internet import protocol, reactor


class Sink(protocol.DatagramProtocol):
    count = 0

    def startProtocol(self):
        self.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def datagramReceived(self, data, addr):
        if data == b"count?":
            self.transport.write(str(self.count).encode(), addr)
        else:
            self.count += 1


host, port = sys.argv[1].rsplit(":", 1)
port = reactor.listenUDP(int(port), Sink(), interface=host)
addr = port.getHost()
print(f"twisted udp sink: listening on {addr.host}:{addr.port}", flush=True)
reactor.run()
