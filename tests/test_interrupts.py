"""Signals during a run are noted where they land and acted on by ``check``: real signals,
raised in this process."""

import os
import signal
import threading
import time

import pytest

from retently_cli.interrupts import STUCK, Interrupts
from retently_cli.outputs import Output, Stalled


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_is_noted_where_it_lands_and_raised_by_the_next_check_only(signum):
    interrupts = Interrupts()
    with interrupts.noted():
        signal.raise_signal(signum)  # no KeyboardInterrupt here, inside whatever runs
        assert interrupts.pending
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        interrupts.check()  # acted on once
        assert not interrupts.pending


def test_each_signal_is_acted_on_once_so_a_double_ctrl_c_still_means_leave_at_once():
    interrupts = Interrupts()
    with interrupts.noted():
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()  # the first: stop
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()  # the second: leave now
        interrupts.check()


def test_a_signal_finding_an_earlier_one_unheeded_for_a_while_is_raised_where_it_lands():
    """The main thread is blocked where no check is (a write to a stalled pipe)."""
    clock = Clock()
    interrupts = Interrupts(clock)
    with interrupts.noted():
        signal.raise_signal(signal.SIGTERM)
        clock.now += STUCK / 2
        signal.raise_signal(signal.SIGINT)  # soon after: still only noted
        clock.now += STUCK
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        interrupts.check()  # all three were acted on by that one
        signal.raise_signal(signal.SIGINT)  # a new one is noted again
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()


def test_one_signal_left_unheeded_is_raised_where_the_main_thread_waits_after_a_while():
    """One SIGTERM (a container stopping: SIGKILL follows), the main thread blocked where no
    check is: no second signal comes, the timer the first one set raises it."""
    interrupts = Interrupts()
    with interrupts.noted():
        signal.raise_signal(signal.SIGTERM)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            time.sleep(STUCK * 5)  # blocked, as in a write to a pipe nobody reads
        assert STUCK * 0.9 <= time.monotonic() - start < STUCK * 3
        interrupts.check()  # acted on
        time.sleep(STUCK * 1.5)  # and nothing more is raised


def test_a_signal_heeded_in_time_leaves_no_timer_behind():
    interrupts = Interrupts()
    with interrupts.noted():
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        time.sleep(STUCK * 1.5)  # nothing raised here
        signal.raise_signal(signal.SIGINT)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # none left running after


def test_the_handlers_before_are_back_afterwards():
    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)
    before = {s: signal.getsignal(s) for s in watched}
    with Interrupts().noted():
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_once_stopping_a_write_to_a_pipe_nobody_reads_is_given_up_not_waited_on():
    read_end, write_end = os.pipe()
    failures = []
    with open(write_end, "wb") as stream:
        output = Output("stdout", stream, failures.append)
        output.interrupts = _after_a_signal()
        start = time.monotonic()
        output.write(b"x" * (4 << 20))  # far more than a pipe holds
        output.flush()
        waited = time.monotonic() - start
        assert failures == [output] and isinstance(output.error, Stalled)
        assert Output.STALLED_AFTER <= waited < Output.STALLED_AFTER * 3
        assert "was not being read when the run was stopped" in output.describe_error()
        output.write(b"more")  # dropped, not waited on
        output.flush()
        held = os.read(read_end, 1 << 20)
        assert held and set(held) == {ord("x")}  # what it took is whole pieces
    os.close(read_end)


def test_a_block_noted_inside_another_leaves_the_noting_to_the_outer_one():
    interrupts = Interrupts()
    with interrupts.noted():
        with interrupts.noted():
            pass
        signal.raise_signal(signal.SIGTERM)  # still noted, not raised, after the inner block
        assert interrupts.pending and signal.getitimer(signal.ITIMER_REAL)[0] > 0
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_while_waiting_for_an_answer_a_signal_is_raised_at_once(signum):
    interrupts = Interrupts()
    with interrupts.noted():
        with pytest.raises(KeyboardInterrupt), interrupts.at_once():
            signal.raise_signal(signum)
        signal.raise_signal(signum)  # noted again after
        with pytest.raises(KeyboardInterrupt), interrupts.at_once():
            pass  # one noted before the wait is raised as it begins
        interrupts.check()


def test_once_stopping_a_file_past_descriptor_1023_is_written_as_any():
    """select() refuses such a descriptor: a healthy --report file would be given up."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1100:
        pytest.skip("too few file descriptors allowed")
    read_end, write_end = os.pipe()
    high = os.dup2(write_end, 1100)
    os.close(write_end)
    failures = []
    with open(high, "wb") as stream:
        output = Output("--report", stream, failures.append)
        output.interrupts = _after_a_signal()
        output.write(b"record\n")
        output.flush()
    assert failures == [] and os.read(read_end, 100) == b"record\n"
    os.close(read_end)


def _after_a_signal() -> Interrupts:
    interrupts = Interrupts()
    interrupts.count = 1  # one came and was acted on: the run is stopping
    return interrupts


def test_an_interrupt_raised_in_a_stuck_write_is_raised_again_at_the_next_check():
    """Raised in the write, it would cut the event's other records short (a survey in no
    count): the output gives up and the next check, between events, raises it."""

    class Stuck:
        def write(self, data):
            raise KeyboardInterrupt  # what the timer raises in a write that waits

        def flush(self):
            pass

    interrupts = Interrupts()
    failures = []
    output = Output("stdout", Stuck(), failures.append)
    output.interrupts = interrupts
    with interrupts.noted():
        output.write(b"record\n")
        output.flush()  # no raise here
        assert failures == [output] and isinstance(output.error, Stalled)
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        interrupts.check()  # once


def test_once_stopping_a_stderr_without_a_descriptor_is_written_as_before():
    """An embedding caller's or a test's stderr (StringIO): no TypeError from bytes."""
    import io

    from retently_cli.cli.options import TolerantStream

    text = io.StringIO()
    stderr = TolerantStream(text)
    stderr.interrupts = _after_a_signal()
    stderr.write("Summary: 1 line read\n")
    assert text.getvalue() == "Summary: 1 line read\n" and not stderr.broken


def test_a_check_outside_the_noted_block_sets_no_timer():
    """Outside, SIGALRM has its default action: it would kill the process."""
    interrupts = Interrupts()
    with interrupts.noted():
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()  # one left for after: a second still pending
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_write_that_moves_on_is_not_taken_for_a_stuck_one():
    """The timer counts from the write's last progress, not from the signal: a slow reader
    is not a stopped one."""
    interrupts = Interrupts()
    with interrupts.noted():
        signal.raise_signal(signal.SIGTERM)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            while True:  # a write whose pieces go out every 0.3 s, for 3 s, then none
                interrupts.moved()
                time.sleep(0.3 if time.monotonic() - start < STUCK * 3 else STUCK * 5)
        assert STUCK * 3.5 <= time.monotonic() - start < STUCK * 5


def test_once_too_late_a_signal_is_never_raised_but_a_write_that_stopped_is_broken():
    interrupts = Interrupts()
    with interrupts.noted():
        interrupts.too_late()
        signal.raise_signal(signal.SIGTERM)
        time.sleep(STUCK * 1.5)  # not writing: nothing raised
        assert interrupts.count == 1 and not interrupts.pending
        interrupts.check()  # nothing to raise either
        signal.raise_signal(signal.SIGTERM)
        interrupts.moved()
        with pytest.raises(Stalled):
            time.sleep(STUCK * 5)  # a write that does not move: broken, the signal not raised
        interrupts.still()
        interrupts.check()  # nothing for a check either


def test_after_the_signal_was_acted_on_a_write_that_stops_moving_is_still_broken():
    """A terminal nobody reads takes part of a piece and then nothing: the write in the
    grace or in the summary must not wait for ever."""
    interrupts = Interrupts()
    with interrupts.noted():
        signal.raise_signal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()  # acted on: the run is stopping
        interrupts.moved()
        start = time.monotonic()
        with pytest.raises(Stalled):
            time.sleep(STUCK * 5)
        assert STUCK * 0.9 <= time.monotonic() - start < STUCK * 2
        interrupts.still()


def test_another_threads_writes_say_nothing_of_the_main_threads_write():
    """Rich's progress thread writes stderr ten times a second: it cleared the main thread's
    mark, and a moving stdout was given up as stopped."""
    interrupts = Interrupts()
    interrupts.moved()
    mark = interrupts.writing
    other = threading.Thread(target=lambda: (interrupts.moved(), interrupts.still()))
    other.start()
    other.join()
    assert mark is not None and interrupts.writing == mark
    interrupts.still()
    assert interrupts.writing is None
