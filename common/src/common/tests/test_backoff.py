"""The shop's one backoff formula (``common.backoff``)."""

from common.backoff import Backoff, backoff_delay


def test_without_jitter_the_delays_double_up_to_the_cap():
    delays = [backoff_delay(n, base=0.5, cap=4.0, jitter=False) for n in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_with_jitter_each_delay_is_drawn_below_its_exponential_ceiling():
    for attempt in range(8):
        draws = [backoff_delay(attempt, base=0.05, cap=1.0) for _ in range(200)]
        ceiling = min(1.0, 0.05 * 2**attempt)
        assert all(0 <= draw <= ceiling for draw in draws)
        assert len(set(draws)) > 100  # spread out, not in lockstep


def test_a_huge_attempt_number_stays_at_the_cap():
    assert backoff_delay(10_000, base=0.2, cap=5.0, jitter=False) == 5.0


def test_a_reconnect_loop_starts_over_after_a_success():
    backoff = Backoff(initial=1.0, maximum=8.0)
    first = [backoff.next() for _ in range(5)]
    backoff.reset()

    assert all(0 <= delay <= ceiling for delay, ceiling in zip(first, [1, 2, 4, 8, 8], strict=True))
    assert backoff.failures == 0
    assert backoff.next() <= 1.0
