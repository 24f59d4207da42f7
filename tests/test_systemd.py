"""The systemd unit and its installer.

The unit is checked by systemd's own tools where they exist (``systemd-analyze verify`` and the
offline ``security`` score); the installer through its plan, its dry run, and its executor on
files in tmp_path. Nothing here needs root or a running systemd.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.service import app
from bot.config import load_settings
from bot.install.plan import (
    CONFIG_DIR,
    UNIT_DIR,
    UNIT_NAME,
    InstallOptions,
    MachineFacts,
    install_plan,
    render_unit,
    require_root,
    uninstall_plan,
)
from bot.install.steps import (
    DryRunExecutor,
    MakeDir,
    Note,
    Remove,
    Run,
    ServiceError,
    SystemExecutor,
    WriteFile,
)
from bot.settings import DaemonSettings

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / UNIT_NAME
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.requires_tool("systemd-analyze", "it verifies and scores the unit")
MAX_EXPOSURE = 2.0
CREDENTIALS = ("telegram_token", "anthropic_api_key", "openai_api_key")


def directives(text: str) -> dict[str, list[str]]:
    """``{"Section.Key": [values in order]}``; comments and blank lines skipped."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def seconds(span: str) -> float:
    """A systemd time span such as ``60s``, ``2min`` or ``1min 30s`` in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    assert parts, span
    return sum(float(n) * units[u or "s"] for n, u in parts)


def real_executable() -> Path:
    """``verify`` insists that ExecStart's binary exists: the installed entry point, else Python."""
    script = Path(sys.executable).parent / "familiar"
    return script if os.access(script, os.X_OK) else Path(sys.executable)


def write_rendered(tmp_path: Path, user: str = "familiar", text: str | None = None) -> Path:
    template = text if text is not None else UNIT.read_text(encoding="utf-8")
    path = tmp_path / UNIT_NAME  # security/verify name the unit after the file
    path.write_text(
        render_unit(template, exec_start=real_executable(), user=user), encoding="utf-8"
    )
    return path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_PAGER": ""},
    )


def exposure(path: Path) -> float:
    proc = analyze("security", "--offline=true", str(path))
    assert "Invalid syntax" not in proc.stderr and "Unknown key" not in proc.stderr, proc.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    assert match, f"no exposure line in:\n{proc.stdout}\n{proc.stderr}"
    return float(match.group(1))


def gpu_variant(text: str) -> str:
    """The unit edited as its comment tells GPU users to: PrivateDevices=no plus the DeviceAllow= lines."""
    gpu_lines = re.findall(r"^#   ((?:PrivateDevices=no|DeviceAllow=/dev/\S+ rw))$", text, re.M)
    assert "PrivateDevices=no" in gpu_lines and len(gpu_lines) >= 4, gpu_lines
    assert "\nPrivateDevices=yes\n" in text
    return text.replace("\nPrivateDevices=yes\n", "\n" + "\n".join(gpu_lines) + "\n")


# --- The unit's content --------------------------------------------------------------------


def test_unit_has_the_lifecycle_settings_the_daemon_relies_on() -> None:
    unit = directives(UNIT.read_text(encoding="utf-8"))
    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.NotifyAccess"] == ["main"]
    assert seconds(unit["Service.WatchdogSec"][0]) >= 10
    assert unit["Service.Restart"] == ["on-failure"]
    assert seconds(unit["Service.RestartSec"][0]) > 0
    assert unit["Service.StateDirectory"] == ["familiar"]
    assert unit["Service.User"] == ["familiar"]
    assert unit["Service.ExecStart"] == ["/opt/familiar/.venv/bin/familiar run"]
    # systemd must not SIGKILL a shutdown the daemon would still finish within its own bound.
    bound = DaemonSettings.model_fields["shutdown_timeout_s"].default
    assert seconds(unit["Service.TimeoutStopSec"][0]) > bound
    assert "Install.WantedBy" in unit


def test_unit_passes_secrets_as_optional_credentials() -> None:
    unit = directives(UNIT.read_text(encoding="utf-8"))
    loaded = dict(v.split(":", 1) for v in unit["Service.LoadCredential"])
    assert loaded == {name: f"/etc/familiar/{name}" for name in CREDENTIALS}
    # Each has a fallback, which is what makes a missing file non-fatal (systemd.exec(5)).
    fallbacks = {v.split(":", 1)[0] for v in unit["Service.SetCredential"]}
    assert fallbacks == set(CREDENTIALS)


def test_blank_credential_fallback_reads_as_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SetCredential=NAME:\\n`` leaves a file holding one newline: the daemon must see no secret."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "telegram_token").write_text("\n")
    (creds / "openai_api_key").write_text("\n")
    (creds / "anthropic_api_key").write_text("sk-ant-test-1234567890\n")
    for name in (
        "FAMILIAR_CONFIG",
        "FAMILIAR_TELEGRAM__TOKEN",
        "FAMILIAR_LLM__OPENAI_API_KEY",
        "OPENAI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    settings = load_settings(data_dir=tmp_path / "data")
    assert settings.telegram.token is None
    assert settings.llm.openai_api_key is None
    assert settings.llm.anthropic_api_key is not None
    assert settings.llm.anthropic_api_key.get_secret_value() == "sk-ant-test-1234567890"


def test_unit_keeps_what_pytorch_and_the_network_need() -> None:
    unit = directives(UNIT.read_text(encoding="utf-8"))
    assert "Service.MemoryDenyWriteExecute" not in unit  # PyTorch JIT/Triton need W+X memory
    families = set(" ".join(unit["Service.RestrictAddressFamilies"]).split())
    assert {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"} <= families
    assert "Service.PrivateNetwork" not in unit and "Service.IPAddressDeny" not in unit


# --- systemd's own checks ------------------------------------------------------------------


@needs_analyze
def test_rendered_unit_verifies_cleanly(tmp_path: Path) -> None:
    # verify checks syntax and that ExecStart's binary exists; it does not check that User=
    # exists (a user the installer has not created yet passes), so that is left to install.
    path = write_rendered(tmp_path, user="famtest")
    proc = analyze("verify", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # warnings (unknown keys, bad syntax) land here


@needs_analyze
def test_verify_catches_what_the_clean_check_looks_for(tmp_path: Path) -> None:
    """The oracle above works: an empty SetCredential= value, as 252 rejects it, is reported."""
    broken = UNIT.read_text(encoding="utf-8").replace(
        "SetCredential=openai_api_key:\\n", "SetCredential=openai_api_key:"
    )
    proc = analyze("verify", str(write_rendered(tmp_path, text=broken)))
    assert "openai_api_key" in proc.stderr


@needs_analyze
def test_security_exposure_is_at_most_two() -> None:
    assert exposure(UNIT) <= MAX_EXPOSURE


@needs_analyze
def test_rendered_and_gpu_variants_stay_at_most_two(tmp_path: Path) -> None:
    assert exposure(write_rendered(tmp_path, user="famtest")) <= MAX_EXPOSURE
    gpu_dir = tmp_path / "gpu"
    gpu_dir.mkdir()
    gpu = write_rendered(gpu_dir, text=gpu_variant(UNIT.read_text(encoding="utf-8")))
    assert "DeviceAllow=/dev/nvidiactl rw" in gpu.read_text()
    assert exposure(gpu) <= MAX_EXPOSURE
    proc = analyze("verify", str(gpu))
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


# --- Rendering and plans -------------------------------------------------------------------


def test_render_fills_in_prefix_and_user() -> None:
    text = render_unit(
        UNIT.read_text(encoding="utf-8"), exec_start=Path("/srv/fam/.venv/bin/familiar"), user="fam"
    )
    unit = directives(text)
    assert unit["Service.ExecStart"] == ["/srv/fam/.venv/bin/familiar run"]
    assert unit["Service.User"] == ["fam"] and unit["Service.Group"] == ["fam"]
    assert unit["Service.Type"] == ["notify"]  # the rest is untouched
    with pytest.raises(ServiceError, match="ExecStart"):
        render_unit("[Service]\nUser=x\nGroup=x\n", exec_start=Path("/x"), user="y")


def facts(**changes: bool) -> MachineFacts:
    base = dict(
        user_exists=False,
        config_exists=False,
        unit_exists=False,
        venv_has_familiar=False,
        systemd_running=True,
    )
    return MachineFacts(**{**base, **changes})


def test_install_plan_on_a_fresh_machine_in_order() -> None:
    options = InstallOptions(
        user="fam", prefix=Path("/srv/fam"), source=REPO, python="/usr/bin/python3", torch="torch"
    )
    steps = install_plan(options, facts(), UNIT.read_text(encoding="utf-8"))
    runs = [s.argv for s in steps if isinstance(s, Run)]
    assert runs[0][:2] == ("useradd", "--system") and runs[0][-1] == "fam"
    assert runs[1] == ("/usr/bin/python3", "-m", "venv", "/srv/fam/.venv")
    assert runs[2] == ("/srv/fam/.venv/bin/python", "-m", "pip", "install", "torch")
    assert runs[3] == ("/srv/fam/.venv/bin/python", "-m", "pip", "install", str(REPO))
    assert runs[-1] == ("systemctl", "daemon-reload")
    writes = {s.path: s for s in steps if isinstance(s, WriteFile)}
    assert set(writes) == {
        CONFIG_DIR / "README",
        CONFIG_DIR / "familiar.toml",
        UNIT_DIR / UNIT_NAME,
    }
    assert (
        writes[CONFIG_DIR / "familiar.toml"].group == "fam"
        and writes[CONFIG_DIR / "familiar.toml"].mode == 0o640
    )
    assert "ExecStart=/srv/fam/.venv/bin/familiar run" in writes[UNIT_DIR / UNIT_NAME].content
    # The unit lands only after everything it runs exists, and systemd reloads it last.
    order = [type(s).__name__ + str(getattr(s, "path", getattr(s, "argv", ""))) for s in steps]
    assert order.index(f"WriteFile{UNIT_DIR / UNIT_NAME}") > order.index(f"Run{runs[3]}")


def test_install_plan_keeps_an_existing_user_and_settings() -> None:
    options = InstallOptions(user="fam", prefix=Path("/srv/fam"), source=REPO)
    steps = install_plan(
        options, facts(user_exists=True, config_exists=True), UNIT.read_text(encoding="utf-8")
    )
    assert not any(isinstance(s, Run) and s.argv[0] == "useradd" for s in steps)
    assert not any(isinstance(s, WriteFile) and s.path.name == "familiar.toml" for s in steps)
    notes = " ".join(s.text for s in steps if isinstance(s, Note))
    assert "user fam exists" in notes and "familiar.toml exists" in notes


@pytest.mark.parametrize(
    ("user", "prefix", "problem"),
    [
        ("Bad User", "/opt/familiar", "user name"),
        ("fam", "relative/dir", "prefix"),
        ("fam", "/opt/my fam", "prefix"),
        ("fam", "/", "prefix"),
    ],
)
def test_install_plan_refuses_unsafe_names(user: str, prefix: str, problem: str) -> None:
    with pytest.raises(ServiceError, match=problem):
        install_plan(
            InstallOptions(user=user, prefix=Path(prefix), source=REPO), facts(), UNIT.read_text()
        )


def test_uninstall_removes_only_a_virtualenv_that_is_ours() -> None:
    options = InstallOptions(prefix=Path("/srv/fam"))
    theirs = uninstall_plan(options, facts(unit_exists=True, venv_has_familiar=False))
    assert [s.path for s in theirs if isinstance(s, Remove)] == [UNIT_DIR / UNIT_NAME]
    ours = uninstall_plan(options, facts(unit_exists=True, venv_has_familiar=True))
    assert [s.path for s in ours if isinstance(s, Remove)] == [
        UNIT_DIR / UNIT_NAME,
        Path("/srv/fam/.venv"),
    ]
    assert ("systemctl", "disable", "--now", UNIT_NAME) in [
        s.argv for s in ours if isinstance(s, Run)
    ]


# --- Executors -----------------------------------------------------------------------------


def test_system_executor_writes_files_with_modes_and_runs_commands(tmp_path: Path) -> None:
    import grp
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    my_group = grp.getgrgid(os.getgid()).gr_name
    target = tmp_path / "etc" / "familiar"
    SystemExecutor().carry_out(
        [
            MakeDir(target, 0o750, "dir", owner=me, group=my_group),
            WriteFile(target / "familiar.toml", "# settings\n", 0o640, "file", group=my_group),
            WriteFile(target / "README", "first\n", 0o644, "file"),
            WriteFile(target / "README", "second\n", 0o644, "file, rewritten"),
            Run(("touch", str(target / "ran")), "a command"),
            Remove(target / "ran", "and gone again"),
        ]
    )
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert stat.S_IMODE((target / "familiar.toml").stat().st_mode) == 0o640
    assert (target / "README").read_text() == "second\n"
    assert sorted(p.name for p in target.iterdir()) == [
        "README",
        "familiar.toml",
    ]  # no temp files left


def test_system_executor_names_the_failed_command() -> None:
    with pytest.raises(ServiceError, match="`false` failed with exit status 1") as info:
        SystemExecutor().apply(Run(("false",), "a step that fails"))
    assert "run the install again" in info.value.fix


def test_dry_run_executor_changes_nothing(tmp_path: Path) -> None:
    import io

    out = io.StringIO()
    DryRunExecutor(out).carry_out(
        [
            MakeDir(tmp_path / "d", 0o755, "a dir"),
            WriteFile(tmp_path / "f", "hello\n", 0o600, "a file"),
            Run(("false",), "x"),
        ]
    )
    assert list(tmp_path.iterdir()) == []
    assert f"mkdir {tmp_path / 'd'} (mode 0755)" in out.getvalue()
    assert "    hello" in out.getvalue() and "$ false" in out.getvalue()


# --- The CLI -------------------------------------------------------------------------------


def test_dry_run_install_lists_every_step_and_does_nothing(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    torch = "torch --index-url https://download.pytorch.org/whl/cu124"
    result = CliRunner().invoke(
        app,
        ["install", "--dry-run", "--user", "famtest", "--prefix", str(prefix)],
        env={"FAMILIAR_TORCH": torch},
    )
    assert result.exit_code == 0, result.output
    out = result.output
    expected_in_order = [
        "$ useradd --system --user-group",
        f"mkdir {prefix} (mode 0755)",
        f"-m venv {prefix}/.venv",
        f"$ {prefix}/.venv/bin/python -m pip install {torch}",
        f"$ {prefix}/.venv/bin/python -m pip install {REPO}",
        f"mkdir {CONFIG_DIR} (mode 0750, owner root:famtest)",
        f"write {CONFIG_DIR}/README (mode 0644)",
        f"write {UNIT_DIR}/{UNIT_NAME} (mode 0644)",
        f"    ExecStart={prefix}/.venv/bin/familiar run",
        "    User=famtest",
        "$ systemctl daemon-reload",
    ]
    positions = [out.find(line) for line in expected_in_order]
    assert -1 not in positions, [
        line for line, p in zip(expected_in_order, positions, strict=True) if p < 0
    ]
    assert positions == sorted(positions)
    assert not prefix.exists()


def run_unprivileged(args: list[str]) -> tuple[int, str]:
    """Invoke the CLI in a forked child that first drops to ``nobody`` when the tests run as root.

    Forking keeps the already-imported interpreter, so the child needs no access to the
    virtualenv's files (which an unprivileged user may not be able to read).
    """
    import pwd

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            result = CliRunner().invoke(app, args)
            os.write(write_end, f"{result.exit_code}\n{result.output}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read().decode()
    _, child_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(child_status) == 0 and data, "the unprivileged child failed"
    code, _, output = data.partition("\n")
    return int(code), output


def test_install_without_root_refuses_before_doing_anything(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    code, output = run_unprivileged(["install", "--prefix", str(prefix)])
    assert code == 2, output
    assert "needs root" in output and "--dry-run" in output
    assert not prefix.exists()
    code, output = run_unprivileged(["uninstall", "--prefix", str(prefix)])
    assert code == 2 and "needs root" in output, output


def test_require_root_allows_root_and_dry_runs() -> None:
    require_root(0, dry_run=False, what="installing")
    require_root(1000, dry_run=True, what="installing")
    with pytest.raises(ServiceError, match="needs root"):
        require_root(1000, dry_run=False, what="installing")


def test_every_service_command_has_help() -> None:
    runner = CliRunner()
    for command in ("install", "uninstall"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--dry-run" in result.output
    for info in app.registered_commands:
        assert info.callback is not None and (info.callback.__doc__ or "").strip()
