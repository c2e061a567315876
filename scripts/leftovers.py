"""Prints the pids of the processes whose environment carries TEST_SUITE_MARK=<mark> (argv[1]),
except this process and its ancestors: what the test suite left running."""
import os
import sys

mark = ("TEST_SUITE_MARK=" + sys.argv[1]).encode()
skip = set()
pid = os.getpid()
while pid > 1:
    skip.add(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            pid = int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        break
for entry in os.listdir("/proc"):
    if not entry.isdigit() or int(entry) in skip:
        continue
    try:
        with open(f"/proc/{entry}/environ", "rb") as f:
            env = f.read().split(b"\0")
        with open(f"/proc/{entry}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        continue
    if mark in env and state != b"Z":
        print(entry)
