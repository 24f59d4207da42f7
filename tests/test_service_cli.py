"""``familiar service uninstall`` and ``install`` refusals, through the CLI, all as dry runs.

Uninstall removes only a virtualenv that holds Familiar's entry point, so a mistyped ``--prefix``
cannot delete something else; bad names and a checkout without the unit template are refused
with a fix before anything is done. (A real run changes /etc: never done by a test.)
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from bot.cli.service import app
from bot.install.plan import CONFIG_DIR, UNIT_DIR, UNIT_NAME


def service(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_uninstall_would_remove_a_familiar_virtualenv_and_keep_the_data(tmp_path: Path) -> None:
    entry = tmp_path / "opt" / ".venv" / "bin" / "familiar"
    entry.parent.mkdir(parents=True)
    entry.write_text("#!/bin/sh\n")

    result = service("uninstall", "--dry-run", "--prefix", str(tmp_path / "opt"))

    assert result.exit_code == 0, result.output
    assert f"remove {tmp_path / 'opt' / '.venv'}" in result.output
    assert "kept the data" in result.output and str(CONFIG_DIR) in result.output
    if not (UNIT_DIR / UNIT_NAME).exists():
        assert f"{UNIT_DIR / UNIT_NAME} does not exist" in result.output
    assert entry.exists()  # a dry run removes nothing


def test_uninstall_leaves_a_prefix_without_familiar_alone(tmp_path: Path) -> None:
    other = tmp_path / "opt" / ".venv"
    other.mkdir(parents=True)
    (other / "someone-elses-file").write_text("keep")

    result = service("uninstall", "--dry-run", "--prefix", str(tmp_path / "opt"))

    assert result.exit_code == 0, result.output
    assert f"no Familiar virtualenv at {other}, leaving it alone" in result.output
    assert f"remove {other}" not in result.output


def test_unsafe_names_are_refused_with_a_fix(tmp_path: Path) -> None:
    relative = service("uninstall", "--dry-run", "--prefix", "relative/path")
    assert relative.exit_code == 2
    assert "must be an absolute path" in relative.output and "fix: " in relative.output
    user = service("uninstall", "--dry-run", "--user", "root;rm", "--prefix", str(tmp_path))
    assert user.exit_code == 2
    assert "is not a valid system user name" in user.output


def test_install_from_a_folder_without_the_unit_template_is_refused(tmp_path: Path) -> None:
    not_a_checkout = tmp_path / "src"
    not_a_checkout.mkdir()
    prefix = tmp_path / "opt"

    result = service(
        "install", "--dry-run", "--source", str(not_a_checkout), "--prefix", str(prefix)
    )

    assert result.exit_code == 2
    assert f"the unit template {not_a_checkout / 'systemd' / UNIT_NAME} is missing" in (
        result.output
    )
    assert "--source" in result.output
    assert "useradd" not in result.output  # refused before any step was listed
    assert not prefix.exists()
