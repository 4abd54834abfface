"""Twisted's TLS echo server for weft's `net` benchmarks: the Echo protocol
of echo_server.py behind listenSSL (pyOpenSSL; session tickets turned on,
as weft and tokio-rustls resume by default). Arguments: HOST:PORT CERT.pem KEY.pem (the certificate
file holds the chain). Prints one line when listening."""
import sys

from twisted.internet import protocol, reactor, ssl


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


host, port = sys.argv[1].rsplit(":", 1)
with open(sys.argv[2]) as f:
    chain = f.read()
with open(sys.argv[3]) as f:
    key = f.read()
pems = [p + "-----END CERTIFICATE-----\n"
        for p in chain.split("-----END CERTIFICATE-----") if p.strip()]
leaf = ssl.PrivateCertificate.loadPEM(key + pems[0])
extra = [ssl.Certificate.loadPEM(p).original for p in pems[1:]]
options = ssl.CertificateOptions(privateKey=leaf.privateKey.original,
                                 certificate=leaf.original,
                                 extraCertChain=extra,
                                 enableSessionTickets=True)
listening = reactor.listenSSL(int(port), protocol.Factory.forProtocol(Echo),
                              options, backlog=1024, interface=host)
print("twisted tls echo: listening on %s:%d" % (host, listening.getHost().port),
      flush=True)
reactor.run()
