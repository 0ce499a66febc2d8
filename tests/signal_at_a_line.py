"""Runs ``retently`` with a signal sent to itself at one chosen line of the main thread.

    python tests/signal_at_a_line.py SIGNAL N FILE... -- ARGS...

A signal can arrive at any moment; this makes "any moment" reproducible. The main thread is
traced, and when it is at the Nth line it runs in any of FILE (paths ending so, e.g.
``queue.py``; ``FILE:FUNCTION`` counts only that function's lines), SIGNAL is sent to this
process. Prints ``signalled at FILE:LINE in FUNCTION``
on stderr (or ``never signalled``), then the command runs on as a signal left it.
"""

import os
import signal
import sys
import threading


def main() -> None:
    name, nth, *rest = sys.argv[1:]
    split = rest.index("--")
    args = rest[split + 1 :]
    files = tuple(spec.split(":")[0] for spec in rest[:split])
    functions = {spec.split(":")[1] for spec in rest[:split] if ":" in spec}
    signum, target = getattr(signal, name), int(nth)
    seen = 0
    main_thread = threading.main_thread()

    def trace(frame, event, arg):
        nonlocal seen
        if threading.current_thread() is not main_thread:
            return None
        code = frame.f_code
        if not code.co_filename.endswith(files):
            return None
        if functions and code.co_name not in functions:
            return trace
        if event == "line":
            seen += 1
            if seen == target:
                sys.settrace(None)
                sys.stderr.write(f"signalled at {_where(frame)}, called from {_caller(frame)}\n")
                os.kill(os.getpid(), signum)
                return None
        return trace

    from retently_cli.launch import main as retently  # the entry point: its lines are not counted

    sys.argv = ["retently", *args]
    sys.settrace(trace)
    try:
        retently()
    finally:
        if seen < target:
            sys.stderr.write(f"never signalled ({seen} lines seen)\n")


def _where(frame) -> str:
    code = frame.f_code
    return f"{os.path.basename(code.co_filename)}:{frame.f_lineno} in {code.co_name}"


def _caller(frame) -> str:
    """The innermost frame of retently's own code."""
    while frame is not None and "retently_cli" not in frame.f_code.co_filename:
        frame = frame.f_back
    return "?" if frame is None else _where(frame)


if __name__ == "__main__":
    main()
