"""The scale-out proof on real Redis + MariaDB: 2 waitress web processes and 2
Celery worker processes on one database and one storage root, a simulator with
0.5 s latency counting concurrent calls; one worker SIGKILLed mid-batch, then one
web process. Every agent setting is its default. scripts/bench_scaleout.py runs
the same with 200 images and prints the throughput."""

import sys
from pathlib import Path

import pytest
from conftest import ON_MYSQL, REDIS_URL, TABLES
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from bench_scaleout import Settings, report, run_cluster, verdicts  # noqa: E402

pytestmark = pytest.mark.skipif(
    not ON_MYSQL, reason="several processes on one database: runs in the MariaDB pass"
)


def empty_tables(url):
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
    engine.dispose()


def test_two_web_and_two_worker_processes_survive_kill_9(migrated_database, redis_prefix, tmp_path):
    # The agents' default settings, as the README tells users to run them.
    settings = Settings(images=40, singles=4, kill_after=0.25)
    empty_tables(migrated_database)
    try:
        outcome = run_cluster(
            settings, migrated_database, REDIS_URL, redis_prefix, tmp_path, say=print
        )
    finally:
        empty_tables(migrated_database)
    report(settings, outcome)
    ok = verdicts(settings, outcome)
    assert 0 < outcome.max_active <= settings.cap, outcome.max_active
    assert outcome.done == settings.images, outcome.states
    assert outcome.batch_status == ["done", "done"]
    assert outcome.rows_per_item == {1: settings.images}
    assert outcome.file_sets_per_item == {1: settings.images}
    assert ok["once"], (outcome.image_rows, outcome.result_dirs)
    assert outcome.taken_over >= 1, outcome.logs  # the killed worker's items were run again
    # ... given back by the sweep within seconds, not after the visibility timeout (553 s)
    assert outcome.requeued and outcome.requeued[0][0] < 30, (outcome.requeued, outcome.logs)
    assert outcome.singles_ok == settings.singles  # web 2 answered while web 1 was dead
    assert outcome.fsck_ok, outcome.fsck_output
    assert outcome.cluster["mode"] == "distributed"
    assert outcome.cluster["model_slots"] == settings.cap
    assert outcome.cluster["queue_depth"] == 0
