"""shell/pacer.py with the clock as a parameter: max-rate N lets a backlog leave at N
datagrams a second per collector, a quiet collector a burst of BURST x N, in order."""

from pflowbsd.shell.pacer import BURST, Pacer

A, B = ("127.0.0.1", 9995), ("127.0.0.1", 9996)


def test_a_burst_drains_at_the_rate_in_order_and_each_collector_on_its_own():
    p = Pacer(1000)
    first = p.offer({A: [b"%d" % i for i in range(100)], B: [b"b"]}, 10.0)
    assert first[B] == [b"b"]
    assert len(first[A]) == int(BURST * 1000) + 1  # the slot clock may lag by BURST
    sent = list(first[A])
    t = 10.0
    while p.next_due() is not None:
        t = p.next_due()
        sent += p.release(t)[A]
    assert sent == [b"%d" % i for i in range(100)]
    assert abs(t - 10.0 - (100 - len(first[A])) / 1000) < 0.002  # 1 ms a datagram
    assert p.held == 0


def test_a_new_poll_is_queued_behind_the_backlog_and_never_waits_for_it():
    p = Pacer(10)
    assert p.offer({A: [b"1", b"2", b"3"]}, 0.0)[A] == [b"1"]
    assert p.offer({A: [b"4"]}, 0.05)[A] == []  # behind 2 and 3: offer returns at once
    assert p.release(0.1)[A] == [b"2"]
    assert p.release(0.3)[A] == [b"3"]  # a backlog does not earn a burst
    assert p.release(0.39)[A] == [b"4"]
    assert p.next_due() is None


def test_rate_zero_sends_what_waits_at_once():
    p = Pacer(1)
    p.offer({A: [b"1", b"2", b"3"]}, 0.0)
    p.set_rate(0)
    assert p.release(0.0)[A] == [b"2", b"3"]
