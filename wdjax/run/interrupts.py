"""Ctrl-C while a sweep trains: the first asks to stop at the next epoch end (a checkpoint is
saved there), a second stops at once and says what was kept."""

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable

log = logging.getLogger("wdjax")

#: How to continue a stopped run, in the line a second Ctrl-C prints (the CLI puts its command).
resume_hint = "sweep(..., resume=True) with the same arguments"


@contextlib.contextmanager
def stop_requests(enabled: bool, saved: Callable[[], str] = lambda: "nothing was saved"):
    """While training: the first Ctrl-C asks to stop at the next epoch end (``stop[0]`` turns
    True); a second stops at once: it prints one line, ``saved()`` (what is kept), and exits
    with status 130. A thread sees the signals as they come (``signal.set_wakeup_fd``), also
    while the main thread waits on a compiled call, so both take effect at once."""
    stop = [False]
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return
    receive, send = socket.socketpair()
    send.setblocking(False)

    def watch():
        count = 0
        while True:
            got = receive.recv(64)  # one byte per signal: its number
            count += got.count(signal.SIGINT)
            if count > 1:
                sys.stderr.write(f"\nstopped at once; {saved()}\n")
                sys.stderr.flush()
                os._exit(130)
            if count == 1 and not stop[0]:
                stop[0] = True
                log.warning("stopping after this epoch (a checkpoint is saved); Ctrl-C again to "
                            "stop now")  # fmt: skip
            if not got or 0 in got:  # 0: training has ended
                return

    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)  # (the thread acts)
    previous_fd = signal.set_wakeup_fd(send.fileno(), warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="wdjax-ctrl-c", daemon=True)
    watcher.start()
    try:
        yield stop
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous)
        send.send(b"\0")
        watcher.join()
        receive.close()
        send.close()
