"""udp-echo-rr's Twisted server: every datagram back to its sender.
Run by the harness as `python udp_echo_server.py 127.0.0.1:0`."""

import sys

from twisted.internet import protocol, reactor


class Echo(protocol.DatagramProtocol):
    def datagramReceived(self, data, addr):
        self.transport.write(data, addr)


host, port = sys.argv[1].rsplit(":", 1)
port = reactor.listenUDP(int(port), Echo(), interface=host)
addr = port.getHost()
print(f"twisted udp echo: listening on {addr.host}:{addr.port}", flush=True)
reactor.run()
