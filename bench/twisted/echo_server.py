"""Twisted's echo server for weft's `net` benchmarks: a Protocol echoing in
dataReceived on the default reactor (epoll). Prints one line when listening."""
import sys

from twisted.internet import protocol, reactor


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


host, port = sys.argv[1].rsplit(":", 1)
listening = reactor.listenTCP(int(port), protocol.Factory.forProtocol(Echo),
                              backlog=1024, interface=host)
print("twisted echo: listening on %s:%d" % (host, listening.getHost().port), flush=True)
reactor.run()
