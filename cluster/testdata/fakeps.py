"""Stand-ins for psserver, psworker and psctl, used only by cluster/selftest-netns.sh.

They speak a trivial line protocol over real TCP, so the self-test exercises netns.sh's
namespaces, bridge, packet loss, kills, restarts and exit-code bookkeeping without the Swift
binaries. One file, dispatched on $FAKEPS_ROLE (psserver, psworker or psctl; the self-test writes one
small wrapper per role). Requests: "STATUS" -> "OK"; "DONE <name>" -> "OK" (the server records the name in
<checkpoint-dir>/done.txt and exits 0 once --workers distinct names are done; started with
--restore it keeps the names recorded by the previous run); "JOIN <address>" -> "OK" (logged as
event=server-joined). A psserver started with --join sends JOIN once, then polls STATUS and
exits 0 when the coordinator has gone away (1 when it never answered).
"""

import os
import socket
import sys
import time


def flag(args, name, default=None):
    """Returns the value after --name in args, or default."""
    if name in args:
        i = args.index(name)
        if i + 1 < len(args):
            return args[i + 1]
    return default


def request(address, line, timeout=2.0):
    """Sends one line and returns the stripped reply."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall((line + "\n").encode())
        return s.makefile().readline().strip()


def joined(args):
    coordinator = flag(args, "--join")
    advertise = flag(args, "--advertise", "")
    deadline = time.monotonic() + 10
    while True:
        try:
            if request(coordinator, "JOIN " + advertise) == "OK":
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            print("level=error event=coordinator-unreachable", file=sys.stderr, flush=True)
            return 1
        time.sleep(0.2)
    print(f"level=info event=joined advertise={advertise}", file=sys.stderr, flush=True)
    while True:
        time.sleep(0.2)
        try:
            request(coordinator, "STATUS")
        except OSError:
            print("level=info event=job-finished", file=sys.stderr, flush=True)
            return 0


def server(args):
    if "--join" in args:
        return joined(args)
    port = int(flag(args, "--port", "7000"))
    workers = int(flag(args, "--workers", "1"))
    directory = flag(args, "--checkpoint-dir", ".")
    os.makedirs(directory, exist_ok=True)
    record = os.path.join(directory, "done.txt")
    done = set()
    if "--restore" in args and os.path.exists(record):
        with open(record) as f:
            done = {line.strip() for line in f if line.strip()}
        print(f"level=info event=restored done={len(done)}", file=sys.stderr, flush=True)
    elif os.path.exists(record):
        os.remove(record)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((flag(args, "--host", "0.0.0.0"), port))
    listener.listen(64)
    print(f"level=info event=listening address=0.0.0.0:{port}", file=sys.stderr, flush=True)
    while len(done) < workers:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(2.0)
            try:
                line = conn.makefile().readline().strip()
            except OSError:
                continue
            if line.startswith("JOIN "):
                print(f"level=info event=server-joined address={line.split(' ', 1)[1]}",
                      file=sys.stderr, flush=True)
            elif line.startswith("DONE "):
                name = line.split(" ", 1)[1]
                if name not in done:
                    done.add(name)
                    with open(record, "a") as f:
                        f.write(name + "\n")
                print(f"level=info event=worker-done name={name} done={len(done)}",
                      file=sys.stderr, flush=True)
            try:
                conn.sendall(b"OK\n")
            except OSError:
                pass
    print("level=info event=job-finished", file=sys.stderr, flush=True)
    return 0


def worker(args):
    address = flag(args, "--server", os.environ.get("PS_SERVER", ""))
    name = flag(args, "--name", "worker")
    steps = int(flag(args, "--steps", "10"))
    delay = int(flag(args, "--debug-step-delay-ms", "0")) / 1000.0
    patience = float(flag(args, "--reconnect-timeout", "10"))
    for _ in range(steps):
        time.sleep(delay)
    deadline = time.monotonic() + patience
    while True:
        try:
            if request(address, "DONE " + name) == "OK":
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            print(f"level=error event=server-unreachable name={name}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"level=info event=done name={name}", file=sys.stderr, flush=True)
    return 3 if flag(args, "--fail-name") == name else 0


def ctl(args):
    address = flag(args, "--server", os.environ.get("PS_SERVER", ""))
    if "status" not in args:
        print("fake psctl: only status", file=sys.stderr)
        return 2
    try:
        return 0 if request(address, "STATUS") == "OK" else 1
    except OSError as error:
        print(f"fake psctl: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    role = os.environ.get("FAKEPS_ROLE") or os.path.basename(sys.argv[0])
    handlers = {"psserver": server, "psworker": worker, "psctl": ctl}
    sys.exit(handlers[role](sys.argv[1:]))
