"""Signals during a run are noted where they land and acted on by ``check``: real signals,
raised in this process."""

import signal

import pytest

from retently_cli.interrupts import STUCK, Interrupts


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


def test_the_handlers_before_are_back_afterwards():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with Interrupts().noted():
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
