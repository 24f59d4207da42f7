"""No byte of a secret reaches a backup, whatever TOML spelling the settings file uses.

The property: for every secret field of the settings model and every shape of TOML that
``load_settings`` accepts for it (a table, a dotted key at the top level, an inline table, quoted
keys, basic, literal and multi-line strings, a line-continued string, unicode escapes), the
archive's uncompressed bytes hold neither the secret nor any 12-character piece of it, while
every other setting survives as a value. Each example first proves that ``load_settings`` really
reads the secret from the file as written.
"""

from __future__ import annotations

import gzip
import itertools
import json
import tarfile
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import load_settings, secret_field_paths
from bot.errors import ConfigError
from jobs.backup import BackupSources, create_backup, list_archives
from jobs.restore import restore_archive
from memory.db import Database
from tests.jobs.conftest import all_test_migrations

SECRET_PATHS = sorted(secret_field_paths())
# Another setting in each secret's section, so redaction is seen to keep its neighbours.
NEIGHBOURS = {"telegram": ("admins", [42, 7]), "llm": ("max_output_tokens", 4096)}
ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789:_-+/=.~!@#$%^&*()\\"éß€'
WINDOW = 12


def _diverse(s: str) -> bool:
    # A run like "000000000000" could occur by chance in a tar header; real secrets do not look so.
    return len(set(s)) >= 10 and not any(len(list(g)) > 2 for _, g in itertools.groupby(s))


secrets = st.text(alphabet=ALPHABET, min_size=24, max_size=60).filter(_diverse)


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def spell_string(form: str, s: str, cut: int) -> str:
    """``s`` as a TOML string value, in one of the spellings TOML allows."""
    if form == "basic":
        return f'"{_esc(s)}"'
    if form == "literal":
        return f"'{s}'"
    if form == "multiline":
        return f'"""\n{_esc(s)}"""'  # the newline after the opening quotes is not part of it
    if form == "multiline-literal":
        return f"'''\n{s}'''"
    if form == "continued":  # a line-ending backslash: the secret is split over two lines
        k = 1 + cut % (len(s) - 1)
        return f'"""{_esc(s[:k])}\\\n        {_esc(s[k:])}"""'
    if form == "escaped":
        return '"' + "".join(f"\\u{ord(c):04X}" for c in s) + '"'
    raise AssertionError(form)


STRING_FORMS = ["basic", "literal", "multiline", "multiline-literal", "continued", "escaped"]
SHAPES = ["table", "dotted", "spaced-dotted", "inline", "quoted-dotted", "quoted-table"]


def spell_file(shape: str, section: str, key: str, value: str, old_secret_comment: str) -> str:
    """A settings file holding ``section.key = value`` in ``shape``, with other settings around."""
    other, other_value = NEIGHBOURS[section]
    other_toml = json.dumps(other_value)
    head = f"# kept from last year: {old_secret_comment}\n" if old_secret_comment else ""
    tail = '\n[jobs]\ntimezone = "UTC"\n'
    if shape == "table":
        body = f"[{section}]\n{other} = {other_toml}\n{key} = {value}\n"
    elif shape == "dotted":
        body = f"{section}.{key} = {value}\n{section}.{other} = {other_toml}\n"
    elif shape == "spaced-dotted":
        body = f"{section} . {key}={value}\n{section} .{other} = {other_toml}\n"
    elif shape == "inline":
        body = f"{section} = {{ {key} = {value}, {other} = {other_toml} }}\n"
    elif shape == "quoted-dotted":
        body = f'"{section}"."{key}" = {value}\n"{section}".{other} = {other_toml}\n'
    elif shape == "quoted-table":
        body = f"['{section}']\n\"{key}\" = {value}\n'{other}' = {other_toml}\n"
    else:
        raise AssertionError(shape)
    return head + body + tail


@pytest.fixture(scope="module")
def small_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("secrets") / "data"
    d.mkdir()
    Database.open(d / "familiar.db", all_test_migrations()).close()
    return d


def archive_bytes(data_dir: Path, dest: Path, keep: bool = False) -> tuple[bytes, dict, str]:
    result = create_backup(
        BackupSources.of(data_dir, data_dir / "familiar.toml", secret_field_paths()),
        dest,
        app_version="test",
        step_sleep_s=0,
        compresslevel=1,
    )
    raw = gzip.decompress(result.path.read_bytes())
    with tarfile.open(result.path) as tar:
        member = tar.extractfile("familiar.toml") if "familiar.toml" in tar.getnames() else None
        settings_text = member.read().decode() if member else ""
    if not keep:
        result.path.unlink()
    return raw, result.manifest, settings_text


def assert_absent(secret: str, raw: bytes) -> None:
    data = secret.encode()
    assert data not in raw
    for i in range(len(data) - WINDOW + 1):
        assert data[i : i + WINDOW] not in raw, f"a piece of the secret is in the archive: {i}"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(SECRET_PATHS),
    shape=st.sampled_from(SHAPES),
    form=st.sampled_from(STRING_FORMS),
    secret=secrets,
    cut=st.integers(min_value=0, max_value=1000),
    old_secret_in_comment=st.booleans(),
)
def test_no_byte_of_a_secret_reaches_the_archive(
    small_data_dir: Path,
    tmp_path: Path,
    path: tuple[str, str],
    shape: str,
    form: str,
    secret: str,
    cut: int,
    old_secret_in_comment: bool,
) -> None:
    section, key = path
    value = spell_string(form, secret, cut)
    old = secret[::-1] if old_secret_in_comment else ""
    (small_data_dir / "familiar.toml").write_text(
        spell_file(shape, section, key, value, old), encoding="utf-8"
    )
    # The daemon would read this secret from the file exactly as written.
    loaded = getattr(getattr(load_settings(data_dir=small_data_dir), section), key)
    assert loaded.get_secret_value() == secret

    raw, manifest, archived = archive_bytes(small_data_dir, tmp_path / "backups")

    assert_absent(secret, raw)
    if old:
        assert_absent(old, raw)
    assert manifest["redacted_settings"] == [f"{section}.{key}"]
    other, other_value = NEIGHBOURS[section]
    assert tomllib.loads(archived) == {
        section: {other: other_value},
        "jobs": {"timezone": "UTC"},
    }
    assert f"Removed (secrets are never archived): {section}.{key}." in archived


def test_every_secret_field_of_the_model_is_covered() -> None:
    # A secret field added to a section is found by the model walk, not by a list kept by hand.
    assert {("telegram", "token"), ("llm", "anthropic_api_key")} <= set(SECRET_PATHS)
    assert {section for section, _ in SECRET_PATHS} <= set(NEIGHBOURS)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'[telegram]\ntoken = "123456:AAunterminated-secret-value-xyz\n', "not valid TOML"),
        (b'[telegram]\ntoken = "123456:AAlatin1-secret-value-\xe9xyz"\n', "not UTF-8"),
    ],
)
def test_a_settings_file_that_does_not_parse_is_not_archived(
    small_data_dir: Path, tmp_path: Path, content: bytes, problem: str
) -> None:
    (small_data_dir / "familiar.toml").write_bytes(content)
    raw, manifest, archived = archive_bytes(small_data_dir, tmp_path / "kept", keep=True)
    assert archived == ""
    assert b"secret-value" not in raw
    assert problem in manifest["settings_problem"]
    assert "familiar.toml" not in {f["path"] for f in manifest["files"]}
    assert manifest["config_origin"] is None
    # A restore says so, and leaves the current settings file alone.
    (archive,) = list_archives(tmp_path / "kept")
    changes = restore_archive(archive.path, small_data_dir, dry_run=True).changes
    assert f"the settings file was not archived: it is {problem}" in " ".join(changes)


def test_secrets_in_shapes_the_settings_refuse_are_removed_too(
    small_data_dir: Path, tmp_path: Path
) -> None:
    # Not loadable (an array of tables, a key in another case), but a file edited while the
    # daemon runs is backed up all the same: its secrets must not be archived either.
    (small_data_dir / "familiar.toml").write_text(
        '[[telegram]]\ntoken = "123456:AAarray-of-tables-secret"\n\n'
        '[LLM]\nAnthropic_API_Key = "sk-ant-case-differs-secret"\n',
        encoding="utf-8",
    )
    raw, manifest, archived = archive_bytes(small_data_dir, tmp_path / "backups")
    assert b"array-of-tables-secret" not in raw
    assert b"case-differs-secret" not in raw
    assert manifest["redacted_settings"] == ["llm.anthropic_api_key", "telegram.token"]


@pytest.mark.parametrize("path", SECRET_PATHS, ids=".".join)
def test_a_secret_of_the_wrong_type_is_not_shown_in_the_settings_error(
    tmp_path: Path, path: tuple[str, str]
) -> None:
    # The same model walk decides what a configuration error may quote back.
    section, key = path
    (tmp_path / "familiar.toml").write_text(f"[{section}]\n{key} = 987654321987654321\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir=tmp_path)
    assert f"{section}.{key}: Input should be a valid string" in str(caught.value)
    assert "987654321987654321" not in str(caught.value)
