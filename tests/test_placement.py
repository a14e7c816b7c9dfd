"""Placement: when waiting for a busy warm environment beats a cold start (pure, no processes)."""

from jupyter_faas.server.backends.local.placement import VersionStats, wait_for_warm

NOW = 100.0


def known(cycle_s, cpu_fraction, init_s=0.03):
    return VersionStats(cycle_s=cycle_s, cpu_fraction=cpu_fraction, init_s=init_s)


def test_fewer_environments_than_cores_always_cold_start():
    assert wait_for_warm(known(0.001, 1.0), [NOW], [], NOW, cpus=2) is None


def test_short_cpu_bound_work_waits_for_the_soonest_busy_environment():
    wait = wait_for_warm(known(0.002, 1.0), [NOW - 0.001, NOW], [], NOW, cpus=2)
    assert wait is not None and abs(wait - 0.001) < 1e-9


def test_long_cpu_bound_work_cold_starts():
    assert wait_for_warm(known(5.0, 1.0), [NOW, NOW], [], NOW, cpus=2) is None


def test_io_bound_work_scales_out_like_lambda():
    assert wait_for_warm(known(0.02, 0.01), [NOW, NOW, NOW], [], NOW, cpus=2) is None


def test_an_environment_overdue_by_more_than_a_cold_start_is_not_waited_for():
    assert wait_for_warm(known(0.002, 1.0), [NOW - 1, NOW - 1], [], NOW, cpus=2) is None


def test_burst_before_anything_finished_waits_for_the_environments_already_started():
    assert wait_for_warm(None, [], [NOW, NOW, NOW, NOW], NOW, cpus=2) is not None
    assert wait_for_warm(None, [NOW - 0.01, NOW - 0.01], [], NOW, cpus=2, default_init_s=0.03) > 0
    assert wait_for_warm(None, [NOW - 1, NOW - 1], [], NOW, cpus=2) is None


def test_running_averages_track_cpu_share_of_the_handler_not_the_round_trip():
    stats = VersionStats()
    stats.observe_run(cycle_s=0.004, handler_s=0.00001, cpu_s=0.00001)
    assert stats.cpu_fraction == 1.0 and stats.cycle_s == 0.004
