"""Twisted's side of weft's process benchmarks: `proc-spawn` (spawnProcess
of `true`, four in flight, children per second until processEnded) and
`proc-stream` (MB/s through `cat`, 64 KiB writes at most 1 MiB ahead).
Arguments: JOB SECONDS. Prints `RESULT <job> <unit> <value>`."""
import sys
import time

from twisted.internet import protocol, reactor

job, seconds = sys.argv[1], float(sys.argv[2])
CHUNK = b"s" * 65536
AHEAD = 1 << 20


class Once(protocol.ProcessProtocol):
    def __init__(self, state):
        self.state = state

    def processEnded(self, reason):
        self.state["n"] += 1
        if time.monotonic() < self.state["end"]:
            spawn(self.state)
        else:
            self.state["live"] -= 1
            if self.state["live"] == 0:
                elapsed = time.monotonic() - self.state["start"]
                print("RESULT proc-spawn per_s %f" % (self.state["n"] / elapsed), flush=True)
                reactor.stop()


def spawn(state):
    reactor.spawnProcess(Once(state), "/bin/true", ["true"], env=None)


class Stream(protocol.ProcessProtocol):
    def connectionMade(self):
        self.sent = self.got = 0
        self.start = time.monotonic()
        self.closed = False
        self.pump()

    def pump(self):
        if self.closed:
            return
        if time.monotonic() - self.start >= seconds:
            self.closed = True
            self.transport.closeStdin()
            return
        while self.sent - self.got < AHEAD:
            self.transport.write(CHUNK)
            self.sent += len(CHUNK)

    def childDataReceived(self, fd, data):
        self.got += len(data)
        self.pump()

    def processEnded(self, reason):
        elapsed = time.monotonic() - self.start
        print("RESULT proc-stream mb_per_s %f" % (self.got / 1e6 / elapsed), flush=True)
        reactor.stop()


if job == "proc-spawn":
    now = time.monotonic()
    state = {"n": 0, "start": now, "end": now + seconds, "live": 4}
    for _ in range(4):
        spawn(state)
elif job == "proc-stream":
    reactor.spawnProcess(Stream(), "/bin/cat", ["cat"], env=None)
else:
    sys.exit("unknown job " + job)
reactor.run()
