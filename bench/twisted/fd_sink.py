"""fd-pass's Twisted server: closes every descriptor it receives and
answers each byte with one byte. Run by the harness as
`python fd_sink.py PATH`."""

import os
import sys

from twisted.internet import protocol, reactor
from twisted.internet.interfaces import IFileDescriptorReceiver
from zope.interface import implementer


@implementer(IFileDescriptorReceiver)
class Sink(protocol.Protocol):
    def fileDescriptorReceived(self, fd):
        os.close(fd)

    def dataReceived(self, data):
        self.transport.write(b"k" * len(data))


class Factory(protocol.Factory):
    protocol = Sink


path = sys.argv[1]
reactor.listenUNIX(path, Factory())
print(f"twisted fd sink: listening on {path}", flush=True)
reactor.run()
