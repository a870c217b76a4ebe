"""Worker processes that end as a whole: started in a process group of their own, ended with everything in it.

Inside Slicer, Python is started through PythonSlicer, a launcher that runs the real interpreter as
its child and hands it its stdout: ending only the launcher would leave the work running, and a reader
of the pipe would wait for it. So the worker starts in a new session (POSIX: its own process group) or
a new process group (Windows), and ending it ends that group (POSIX) or its process tree (Windows).
Nothing here waits for a process to exit.
"""
from __future__ import annotations

import os
import signal
import subprocess
from typing import Mapping, Sequence

WINDOWS = os.name == "nt"


def startProcessGroup(args: Sequence[str], env: Mapping[str, str],
                      stdin: int = subprocess.DEVNULL) -> subprocess.Popen:
    """Start `args` in a new process group with stdout and stderr as one binary pipe and no console window;
    `stdin`: subprocess.PIPE to write to it."""
    options = dict(stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(env))
    if WINDOWS:
        startup = subprocess.STARTUPINFO()
        startup.dwFlags |= subprocess.STARTF_USESHOWWINDOW  # wShowWindow 0: hidden
        return subprocess.Popen(list(args), startupinfo=startup,
                                creationflags=subprocess.CREATE_NEW_PROCESS_GROUP, **options)
    return subprocess.Popen(list(args), start_new_session=True, **options)


def killProcessGroup(process: subprocess.Popen) -> None:
    """Kill `process` and every process it started; returns at once, without waiting for them to exit."""
    if WINDOWS:
        _killTreeOnWindows(process)
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the group's id is the pid of the process that started it
    except ProcessLookupError:  # every process of the group has exited already
        pass


def _killTreeOnWindows(process: subprocess.Popen) -> None:
    """The launcher's child processes and then the launcher; psutil where installed, else taskkill /T."""
    try:
        import psutil
    except ImportError:
        subprocess.Popen(["taskkill", "/F", "/T", "/PID", str(process.pid)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, creationflags=subprocess.CREATE_NO_WINDOW)
        return
    try:
        root = psutil.Process(process.pid)
        tree = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for member in tree:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
