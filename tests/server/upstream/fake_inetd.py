"""A stand-in for slurmrestd in inetd mode (HTTP on stdin/stdout), for the inetd transport tests.

Usage: fake_inetd.py MODE DIR. It runs with the transport's clean environment, so stdlib only.

answer  read the request to EOF into DIR/request.bin, print DIR/answer.bin, a line on stderr,
        exit with the number in DIR/exit (default 0)
env     answer 200 with the environment as a JSON body
hang    start a child (sleep), write "PID CHILD_PID" to the FIFO DIR/pids, never answer
flood   print a status line, then a body without end
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    """Act out MODE."""
    mode, workdir = sys.argv[1], Path(sys.argv[2])
    out = sys.stdout.buffer
    if mode == "answer":
        (workdir / "request.bin").write_bytes(sys.stdin.buffer.read())
        sys.stderr.write("fake slurmrestd: a line on stderr\n")
        sys.stderr.flush()
        out.write((workdir / "answer.bin").read_bytes())
        out.flush()
        exit_file = workdir / "exit"
        return int(exit_file.read_text()) if exit_file.exists() else 0
    if mode == "env":
        sys.stdin.buffer.read()
        body = json.dumps(dict(os.environ)).encode()
        out.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return 0
    if mode == "hang":
        child = subprocess.Popen(["sleep", "1000"])
        with (workdir / "pids").open("w") as fifo:
            fifo.write(f"{os.getpid()} {child.pid}\n")
        time.sleep(1000)
        return 1
    if mode == "flood":
        out.write(b"HTTP/1.1 200 OK\r\n\r\n")
        while True:
            out.write(b"x" * 65536)
    return 2


if __name__ == "__main__":
    sys.exit(main())
