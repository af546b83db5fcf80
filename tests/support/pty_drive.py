#!/usr/bin/env python3
"""Drives a terminal program on a pty, for the console tests.

Usage: pty_drive.py STEPS_JSON COLS ROWS -- ARGV...
STEPS is a list of ["send", text], ["expect", text, seconds] (text must
appear after the previous match), ["resize", cols, rows] (the pty's size;
the kernel signals SIGWINCH to the program), ["pause", seconds] (lxc reads
Ctrl+a and q only in separate reads). After the steps the program
gets 20 s to exit. Prints one JSON object: ok, failed (the step that did
not happen), code (exit code, null if it had to be killed), output.
"""

import fcntl
import json
import os
import pty
import select
import struct
import sys
import termios
import time


def set_size(fd, cols, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def main():
    steps = json.loads(sys.argv[1])
    cols, rows = int(sys.argv[2]), int(sys.argv[3])
    argv = sys.argv[sys.argv.index("--") + 1:]
    pid, fd = pty.fork()
    if pid == 0:
        set_size(0, cols, rows)
        os.execvp(argv[0], argv)
    out = bytearray()
    pos = 0
    eof = False

    def pump(timeout):
        nonlocal eof
        if eof:
            time.sleep(min(timeout, 0.05))
            return
        r, _, _ = select.select([fd], [], [], timeout)
        if r:
            try:
                b = os.read(fd, 4096)
            except OSError:
                b = b""
            if b:
                out.extend(b)
            else:
                eof = True

    result = {"ok": True}
    for step in steps:
        if step[0] == "send":
            os.write(fd, step[1].encode())
        elif step[0] == "pause":
            end = time.time() + step[1]
            while time.time() < end:
                pump(end - time.time())
        elif step[0] == "resize":
            set_size(fd, step[1], step[2])
        elif step[0] == "expect":
            want = step[1].encode()
            end = time.time() + (step[2] if len(step) > 2 else 30)
            while True:
                i = out.find(want, pos)
                if i >= 0:
                    pos = i + len(want)
                    break
                left = end - time.time()
                if left <= 0 or (eof and out.find(want, pos) < 0):
                    result = {"ok": False, "failed": step}
                    break
                pump(left)
            if not result["ok"]:
                break
    code = None
    end = time.time() + 20
    while time.time() < end:
        p, status = os.waitpid(pid, os.WNOHANG)
        if p:
            code = os.waitstatus_to_exitcode(status)
            break
        pump(0.1)
    if code is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    while not eof:
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r:
            break
        pump(0)
    result["code"] = code
    result["output"] = out.decode("utf-8", "replace")
    print(json.dumps(result))


main()
