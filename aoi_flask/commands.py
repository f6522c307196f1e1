"""`flask aoi …` maintenance commands."""

import json

import click
from flask.cli import with_appcontext
from flask_migrate import upgrade

from .extensions import db, services
from .services import derived, maintenance
from .services.storage import MB


@click.group()
def aoi():
    """AOI Inference Agent maintenance."""


@aoi.command("init-db")
@with_appcontext
def init_db():
    """Create or upgrade the database schema (same as `flask db upgrade`)."""
    upgrade()
    click.echo("database is at the latest migration")


@aoi.command("fsck")
@click.option("--repair", is_flag=True, help="Fix what is safe to fix, then check again.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--min-age",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Ignore files younger than this many seconds (use e.g. 600 while the agent runs: "
    "it writes files shortly before their rows).",
)
@with_appcontext
def fsck(repair, as_json, min_age):
    """Check that files and database rows agree (and with --repair, mend them).

    Exit status 0 when everything is consistent (after --repair: when nothing
    is left that repair could not fix), 1 otherwise.
    """
    storage = services().storage
    report = maintenance.check(storage, min_age=min_age)
    result = {"before": report.to_dict()}
    if repair and not report.ok:
        result["repairs"] = maintenance.repair(storage, report).to_dict()
        report = maintenance.check(storage, min_age=min_age)
        result["after"] = report.to_dict()
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        echo_fsck(result)
    click.get_current_context().exit(0 if report.ok else 1)


def echo_fsck(result):
    before = result["before"]
    scanned = ", ".join(f"{count} {name}" for name, count in before["scanned"].items())
    click.echo(f"scanned {scanned} in {before['seconds']} s")
    notes = ", ".join(f"{name}: {count}" for name, count in before["notes"].items())
    click.echo(f"notes: {notes}")
    for problem in before["problems"][:200]:
        fix = "" if problem["repairable"] else "  (not repairable)"
        detail = f" — {problem['detail']}" if problem["detail"] else ""
        click.echo(f"  {problem['kind']}: {problem['subject']}{detail}{fix}")
    if before["problem_count"] > 200:
        click.echo(f"  … and {before['problem_count'] - 200} more (use --json for all)")
    click.echo(f"problems: {before['problem_count'] or 'none'} {before['by_kind'] or ''}".rstrip())
    if "repairs" in result:
        for action, count in result["repairs"]["actions"].items():
            click.echo(f"repaired: {action}: {count}")
        after = result["after"]
        remaining = f"{after['problem_count'] or 'no'} problems {after['by_kind'] or ''}"
        click.echo(f"after repair: {remaining.rstrip()}")


@aoi.command("cleanup")
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0),
    required=True,
    help="Purge the files of images analysed more than DAYS days ago.",
)
@click.option("--dry-run", is_flag=True, help="Only report what would be purged.")
@with_appcontext
def cleanup(days, dry_run):
    """Retention: delete old inputs and result images, keep their rows (marked purged).

    Purged images stay in history, statistics and region search; their file
    downloads answer 410 Gone. Failed batch files keep their inputs (they can
    still be retried).
    """
    result = maintenance.purge_older_than(services().storage, days, dry_run=dry_run)
    verb = "would purge" if dry_run else "purged"
    click.echo(
        f"{verb} {result.images} image(s) older than {result.to_dict()['cutoff']}: "
        f"{result.files} file(s), {result.bytes / MB:.1f} MB"
    )


@aoi.command("reindex")
@click.option(
    "--chunk",
    type=click.IntRange(min=100),
    default=derived.IMAGE_CHUNK,
    show_default=True,
    help="Images whose regions are re-derived per transaction.",
)
@with_appcontext
def reindex(chunk):
    """Rebuild everything the agent derives from images, classes and regions.

    Run it after rows were loaded, restored or deleted by other tools than the agent:
    it fills the region search columns (regions.class_id, image_timestamp, batch_id),
    images.total_defects where it is empty, and the /stats rollups. Idempotent, in
    short transactions: safe to run while the agent serves.
    """
    result = derived.rebuild(db.engine, progress=click.echo, image_chunk=chunk)
    click.echo(
        f"reindexed {result['images']} images and {result['days']} days of rollups "
        f"in {result['seconds']} s ({result['images_per_second'] or 0:,} images/s)"
    )
