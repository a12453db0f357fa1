"""Network probes the harness runs inside a container's network namespace
(`nsenter --net=/proc/PID/ns/net python3 netprobe.py ...`), so the image
needs no ping, nc or iperf. Every probe is bounded in count and time and
prints one JSON object.

  connect ADDR PORT COUNT TIMEOUT
      COUNT TCP connects to a port where nothing listens. An answer (refused,
      or accepted) proves the path works; a timeout is a lost packet; an
      immediate error (no route, unreachable) is a cut path.
      -> {"answered": n, "timed_out": n, "failed": n, "errors": [...]}
  sink ADDR PORT SECONDS
      Accepts one connection, counts bytes until EOF. Prints {"ready": true}
      once listening, then {"bytes": n}.
  send ADDR PORT BYTES SECONDS
      Sends BYTES; -> {"bytes": n, "seconds": s, "mbit_s": r}
"""

import json
import socket
import sys
import time


def connect(addr, port, count, timeout):
    answered = timed_out = failed = 0
    errors = set()
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
            answered += 1
        except ConnectionRefusedError:
            answered += 1
        except socket.timeout:
            timed_out += 1
        except OSError as e:
            failed += 1
            errors.add(e.strerror or str(e))
            time.sleep(min(timeout, 0.05))   # an instant error would spin the loop
        finally:
            s.close()
    return {"answered": answered, "timed_out": timed_out, "failed": failed,
            "errors": sorted(errors)}


def sink(addr, port, seconds):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(1)
    srv.settimeout(seconds)
    print(json.dumps({"ready": True}), flush=True)
    conn, _ = srv.accept()
    conn.settimeout(seconds)
    total = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        total += len(chunk)
    conn.close()
    srv.close()
    return {"bytes": total}


def send(addr, port, nbytes, seconds):
    s = socket.create_connection((addr, port), timeout=seconds)
    block = b"\x5a" * (1 << 16)
    t0 = time.monotonic()
    sent = 0
    while sent < nbytes and time.monotonic() - t0 < seconds:
        sent += s.send(block[:min(len(block), nbytes - sent)])
    s.shutdown(socket.SHUT_WR)
    s.settimeout(seconds)
    s.recv(1)                      # EOF: the sink has everything
    took = time.monotonic() - t0
    s.close()
    return {"bytes": sent, "seconds": took, "mbit_s": sent * 8 / took / 1e6}


def main(argv):
    cmd, args = argv[0], argv[1:]
    if cmd == "connect":
        out = connect(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif cmd == "sink":
        out = sink(args[0], int(args[1]), float(args[2]))
    elif cmd == "send":
        out = send(args[0], int(args[1]), int(args[2]), float(args[3]))
    else:
        raise SystemExit(f"netprobe: unknown probe {cmd}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
