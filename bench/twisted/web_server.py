"""twisted.web answering `Hello, World!` to GET / (keep-alive), for weft's
`net` benchmarks. Prints one line when listening."""
import sys

from twisted.internet import reactor
from twisted.web import resource, server


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"Hello, World!"


host, port = sys.argv[1].rsplit(":", 1)
site = server.Site(Hello())
listening = reactor.listenTCP(int(port), site, backlog=1024, interface=host)
print("twisted http: listening on %s:%d" % (host, listening.getHost().port), flush=True)
reactor.run()
