"""A stand-in for unmunge: asks the test (on the unix socket given as --socket=) what to answer.

It sends the credential read from stdin, one line, and gets back a line with the exit status
followed by what to print on stdout. Standard library only: it runs with a clean environment.
"""

import socket
import sys

path = next(arg.removeprefix("--socket=") for arg in sys.argv[1:] if arg.startswith("--socket="))
credential = sys.stdin.buffer.read().strip()
with socket.socket(socket.AF_UNIX) as conn:
    conn.connect(path)
    conn.sendall(credential + b"\n")
    reply = b""
    while chunk := conn.recv(65536):
        reply += chunk
status, _, out = reply.partition(b"\n")
sys.stdout.buffer.write(out)
if status != b"0":
    sys.stderr.write(f"unmunge: Error: fake status {status.decode()}\n")
sys.exit(int(status or b"1"))
