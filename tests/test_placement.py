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


def test_the_pool_keeps_statistics_of_the_versions_run_lately_not_of_every_version_ever(tmp_path):
    from jupyter_faas.server.backends.local import pool
    from jupyter_faas.server.backends.local.memory import WatchdogMemory
    p = pool.Pool(WatchdogMemory(), tmp_path, [], idle_timeout=60)
    kept = pool.VERSION_STATS_KEPT
    p.stats_for(("often", 1)).observe_init(0.5)
    for version in range(3 * kept):
        p.stats_for(("f", version)).observe_init(0.01)
        if version % 100 == 0:
            p.stats_for(("often", 1))  # run now and then: stays
    assert len(p.version_stats) == kept
    assert p.version_stats[("often", 1)].init_s == 0.5
    assert ("f", 3 * kept - 1) in p.version_stats and ("f", 0) not in p.version_stats
