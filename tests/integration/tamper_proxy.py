#!/usr/bin/env python3
"""tamper_proxy.py - a man in the middle on the migration data plane.

test_migrate_tamper.sh has nftables redirect the source's connections to
the destination's vmotion address here. For each one this proxy connects
on to the original destination (SO_ORIGINAL_DST) and relays the bytes both
ways, following the ZMTP 3 framing so that it knows which ferry message
(docs/migration.md, migration/stream_wire.h) each byte belongs to. By mode:

  pass              relays every byte untouched;
  tamper            flips one byte in the sealed body of the first DATA
                    chunk that starts once --after bytes went to the
                    receiver: the chunk's authentication tag no longer fits;
  wrongkey          swaps the sender's ephemeral key in HELLO for one of
                    its own, as a man in the middle doing the key exchange
                    would: the HELLO's MAC, keyed by the identity keys, no
                    longer fits;
  wrongkey-welcome  the same with the receiver's ephemeral key in WELCOME,
                    which the sender checks.

Every change, every connection and its totals go to --report, one line
each, so the test can check that the mode hit what it claims to. The
proxy's own connections carry --mark (SO_MARK), which the nftables rule
leaves alone.
"""
import argparse
import os
import socket
import struct
import sys
import threading

SO_ORIGINAL_DST = 80            # linux/netfilter_ipv4.h
ZMTP_GREETING = 64              # signature, version, mechanism, as-server, filler
FLAG_LONG, FLAG_COMMAND = 0x02, 0x04
HEAD = 16                       # a ferry session header; a handshake's preamble is longer

# Ferry messages (migration/stream_wire.h).
HELLO, WELCOME, DATA = 1, 2, 17
HANDSHAKE_TYPE_AT = 5           # "FMIG", version, type
HELLO_EPHEMERAL_AT, WELCOME_EPHEMERAL_AT, KEY_BYTES = 72, 56, 32
HELLO_SIZE, WELCOME_SIZE = 136, 120
TAG_BYTES = 16


class Report:
    """The report file, shared by every relay thread."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.file = open(path, "a", buffering=1)

    def say(self, line):
        with self.lock:
            self.file.write(line + "\n")


class Tamperer:
    """What the mode changes: asked about every ferry message as its head
    goes by, it answers {offset in the message: new byte value}."""

    def __init__(self, mode, after, report):
        self.mode, self.after, self.report = mode, after, report
        self.lock = threading.Lock()
        self.to_receiver = 0        # bytes relayed towards the receiver, all connections
        self.done = False           # one change per proxy run is enough

    def count(self, toward_receiver, n):
        if toward_receiver:
            with self.lock:
                self.to_receiver += n

    def changes(self, toward_receiver, head, length):
        with self.lock:
            if self.done:
                return {}
            change = self._choose(toward_receiver, head, length)
            self.done = bool(change)
            return change

    def _choose(self, toward_receiver, head, length):
        if head[:4] == b"FMIG" and len(head) > HANDSHAKE_TYPE_AT:
            kind = head[HANDSHAKE_TYPE_AT]
            if self.mode == "wrongkey" and toward_receiver and kind == HELLO and length == HELLO_SIZE:
                return self._swap_key("HELLO", HELLO_EPHEMERAL_AT)
            if self.mode == "wrongkey-welcome" and not toward_receiver and kind == WELCOME \
                    and length == WELCOME_SIZE:
                return self._swap_key("WELCOME", WELCOME_EPHEMERAL_AT)
            return {}
        if self.mode != "tamper" or not toward_receiver or len(head) < HEAD or head[1] != DATA:
            return {}
        if self.to_receiver < self.after:
            return {}
        stream, body_len, seq = struct.unpack_from("<HIQ", head, 2)
        at = HEAD + body_len // 2          # inside the ciphertext, far from header and tag
        self.report.say(f"CHANGED: flipped one byte at offset {at} of DATA chunk seq {seq} on "
                        f"stream {stream} ({body_len}-byte body), {self.to_receiver} bytes "
                        f"into the data plane")
        return {at: None}                   # None: flip the byte that is there

    def _swap_key(self, message, key_at):
        ours = os.urandom(KEY_BYTES)
        self.report.say(f"CHANGED: replaced the ephemeral key in {message} (bytes {key_at}.."
                        f"{key_at + KEY_BYTES - 1}) with the proxy's own {ours.hex()[:16]}...")
        return {key_at + i: ours[i] for i in range(KEY_BYTES)}


class ZmtpFollower:
    """Follows one direction of a ZMTP 3 connection byte by byte, and applies
    the changes the tamperer asks for when their bytes go by. Bytes are only
    ever held back until the end of the buffer they came in: a change always
    lies beyond the head of its message, so it is known before its byte
    leaves."""

    def __init__(self, tamperer, toward_receiver):
        self.tamperer, self.toward_receiver = tamperer, toward_receiver
        self.pos = 0                        # offset in this direction of the next byte
        self.greeting_left = ZMTP_GREETING
        self.state, self.need, self.field = "flags", 1, b""
        self.command, self.length = False, 0
        self.body_at, self.body_left, self.head = 0, 0, b""
        self.pending = {}                   # offset in the direction -> new byte (None: flip)
        self.messages, self.data_chunks = 0, 0

    def feed(self, data):
        data = bytearray(data)
        i = 0
        while i < len(data):
            i += self._step(data, i)
        self._apply(data)
        self.pos += len(data)
        self.tamperer.count(self.toward_receiver, len(data))
        return bytes(data)

    def _step(self, data, i):
        """Consumes bytes from data[i:]; returns how many."""
        if self.greeting_left:
            n = min(self.greeting_left, len(data) - i)
            self.greeting_left -= n
            return n
        if self.state == "body":
            n = min(self.body_left, len(data) - i)
            if not self.command and len(self.head) < HEAD:
                self.head += bytes(data[i:i + min(n, HEAD - len(self.head))])
                if len(self.head) == min(HEAD, self.length):
                    self._message_head()
            self.body_left -= n
            if self.body_left == 0:
                self.state, self.need, self.field = "flags", 1, b""
            return n
        n = min(self.need - len(self.field), len(data) - i)
        self.field += bytes(data[i:i + n])
        if len(self.field) == self.need:
            self._header_field(self.pos + i + n)
        return n

    def _header_field(self, next_at):
        if self.state == "flags":
            flags = self.field[0]
            self.command = bool(flags & FLAG_COMMAND)
            self.state, self.need = "size", 8 if flags & FLAG_LONG else 1
            self.field = b""
            return
        self.length = int.from_bytes(self.field, "big")
        self.body_at, self.body_left, self.head = next_at, self.length, b""
        self.state, self.need, self.field = "body", 0, b""
        if self.length == 0:
            self.state, self.need = "flags", 1

    def _message_head(self):
        self.messages += 1
        if len(self.head) >= HEAD and self.head[:4] != b"FMIG" and self.head[1] == DATA:
            self.data_chunks += 1
        for offset, value in self.tamperer.changes(self.toward_receiver, self.head,
                                                   self.length).items():
            self.pending[self.body_at + offset] = value

    def _apply(self, data):
        for at in [a for a in self.pending if self.pos <= a < self.pos + len(data)]:
            value = self.pending.pop(at)
            data[at - self.pos] = data[at - self.pos] ^ 0x01 if value is None else value


def original_destination(conn):
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, address = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(address), port


def relay(source, sink, follower, done):
    try:
        while True:
            data = source.recv(1 << 20)
            if not data:
                break
            sink.sendall(follower.feed(data))
    except OSError:
        pass
    finally:
        for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass
        done.release()


def serve(conn, peer, args, tamperer, report):
    destination = original_destination(conn)
    upstream = socket.socket()
    try:
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, args.mark)
        upstream.bind((args.listen[0], 0))
        upstream.connect(destination)
    except OSError as e:
        report.say(f"connection {peer[0]}:{peer[1]} -> {destination[0]}:{destination[1]}: "
                   f"cannot connect on: {e}")
        conn.close()
        upstream.close()
        return
    report.say(f"connection {peer[0]}:{peer[1]} -> {destination[0]}:{destination[1]}")
    to_receiver = ZmtpFollower(tamperer, True)
    to_sender = ZmtpFollower(tamperer, False)
    done = threading.Semaphore(0)
    threading.Thread(target=relay, args=(conn, upstream, to_receiver, done), daemon=True).start()
    threading.Thread(target=relay, args=(upstream, conn, to_sender, done), daemon=True).start()
    done.acquire()
    done.acquire()
    conn.close()
    upstream.close()
    report.say(f"closed {peer[0]}:{peer[1]}: {to_receiver.pos} bytes in {to_receiver.messages} "
               f"messages ({to_receiver.data_chunks} DATA chunks) to the receiver, "
               f"{to_sender.pos} bytes in {to_sender.messages} messages back")


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=address, required=True, help="ADDRESS:PORT")
    parser.add_argument("--mode", choices=["pass", "tamper", "wrongkey", "wrongkey-welcome"],
                        required=True)
    parser.add_argument("--after", type=int, default=4 << 20,
                        help="tamper: bytes to the receiver before the chunk that is changed")
    parser.add_argument("--mark", type=int, default=0x4d, help="SO_MARK of our own connections")
    parser.add_argument("--report", required=True)
    args = parser.parse_args()
    report = Report(args.report)
    tamperer = Tamperer(args.mode, args.after, report)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(args.listen)
    listener.listen(16)
    report.say(f"listening on {args.listen[0]}:{args.listen[1]}, mode {args.mode}")
    while True:
        conn, peer = listener.accept()
        threading.Thread(target=serve, args=(conn, peer, args, tamperer, report),
                         daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
