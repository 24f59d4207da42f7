"""``familiar backup [--dest DIR]``, ``backup verify ARCHIVE``, ``backup list`` and ``familiar restore``.

The lead registers them: ``app.add_typer(backup_app, name="backup")`` and
``app.command("restore")(restore_command)``. The work itself lives in jobs/; this module only
reads the settings and prints.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from bot import __version__
from bot.cli.common import friendly as _friendly

backup_app = typer.Typer(
    help="Write a verified backup archive now, verify one, or list them.",
    invoke_without_command=True,
)


def _settings():  # type: ignore[no-untyped-def]
    from bot.config import load_settings

    return load_settings()


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@backup_app.callback()
@_friendly
def backup(
    ctx: typer.Context,
    dest: Path | None = typer.Option(
        None,
        "--dest",
        help="Directory for the archive (default: jobs.backup_dir or <data>/backups).",
    ),
) -> None:
    """Write a backup archive now (database snapshot, index, adapters, settings) and verify it."""
    if ctx.invoked_subcommand is not None:
        return
    from bot.config import secret_field_paths
    from jobs.backup import BackupSources
    from jobs.backup_job import backup_dir, write_verified

    settings = _settings()
    target = dest or backup_dir(settings.jobs, settings.data_dir)
    config = settings.config_file if settings.config_file.is_file() else None
    result, report = write_verified(
        BackupSources.of(settings.data_dir, config, secret_field_paths()),
        target,
        settings.jobs,
        __version__,
    )
    typer.echo(
        f"wrote {result.path} ({_human(result.size)}, {len(result.manifest['files'])} files, "
        f"{result.seconds:.1f} s)"
    )
    for s in result.skipped:
        typer.echo(f"  skipped {s}")
    typer.echo(
        f"verified: every checksum matches, integrity_check {report.integrity} ({report.seconds:.1f} s)"
    )


@backup_app.command("verify")
@_friendly
def verify(archive: Path = typer.Argument(..., help="The .tar.gz archive to check.")) -> None:
    """Check every file's checksum and run integrity_check on the database restored to a temp dir."""
    from jobs.verify import verify_archive

    report = verify_archive(archive)
    m = report.manifest
    typer.echo(
        f"ok: {archive} ({report.files} files, {_human(report.bytes)} unpacked; made "
        f"{m.get('created_at')} by Familiar {m.get('app_version')}; schema {m.get('schema_versions')}; "
        f"integrity_check {report.integrity})"
    )
    if m.get("redacted_settings"):
        removed = ", ".join(m["redacted_settings"])
        typer.echo(f"settings: archived without {removed} (secrets are never archived)")
    if m.get("settings_problem"):
        typer.echo(f"settings: {m['settings_problem']}")


@backup_app.command("list")
@_friendly
def list_(
    dest: Path | None = typer.Option(
        None, "--dest", help="Directory to list (default: the configured one)."
    ),
) -> None:
    """List backup archives with their age and size, newest last."""
    from jobs.backup import list_archives
    from jobs.backup_job import backup_dir

    settings = _settings()
    target = dest or backup_dir(settings.jobs, settings.data_dir)
    archives = list_archives(target)
    if not archives:
        typer.echo(f"no backups in {target}")
        return
    now = datetime.now(UTC)
    for a in archives:
        hours = (now - a.created).total_seconds() / 3600
        age = f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"
        typer.echo(f"{a.path.name}  {age:>8} old  {_human(a.size):>9}")
    typer.echo(f"{len(archives)} archive(s) in {target}")


@_friendly
def restore_command(
    archive: Path = typer.Argument(..., help="The .tar.gz archive to restore."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Verify and show what would change; change nothing."
    ),
) -> None:
    """Restore a backup: refuses while the daemon runs; the current data is moved aside, not deleted."""
    from jobs.restore import restore_archive

    settings = _settings()
    plan = restore_archive(archive, settings.data_dir, dry_run=dry_run)
    typer.echo(plan.describe())
    if dry_run:
        typer.echo("dry run: nothing was changed")
    elif plan.previous:
        typer.echo(f"restored. The previous data is in {plan.aside}; delete it once all is well.")
    else:
        typer.echo(f"restored into {plan.data_dir}; there was no previous data to keep.")
