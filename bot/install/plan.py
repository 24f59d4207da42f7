"""Installing Familiar as a systemd service: a dedicated user, a virtualenv, /etc/familiar, the unit.

An install is first computed as a list of steps (a plan, from a few facts about the machine) and
then handed to an executor (``bot/install/steps.py``): ``SystemExecutor`` carries the steps out,
``DryRunExecutor`` prints them. So ``--dry-run`` shows exactly what a real install would do, and the plan can be tested
without root. The unit file is ``systemd/familiar.service`` of the checkout, with the prefix and
user filled in.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bot.config import render_example
from bot.install.steps import MakeDir, Note, Remove, Run, ServiceError, Step, WriteFile

UNIT_NAME = "familiar.service"
DEFAULT_USER = "familiar"
DEFAULT_PREFIX = Path("/opt/familiar")
UNIT_DIR = Path("/etc/systemd/system")
CONFIG_DIR = Path("/etc/familiar")
STATE_DIR = Path("/var/lib/familiar")  # StateDirectory=familiar; also the user's home
CREDENTIAL_NAMES = ("telegram_token", "anthropic_api_key", "openai_api_key")
# Default pip arguments for PyTorch. Set FAMILIAR_TORCH (or --torch) to choose a build, e.g.
# "torch --index-url https://download.pytorch.org/whl/cu124" for CUDA 12.4, or
# "torch --index-url https://download.pytorch.org/whl/cpu" for the small CPU-only wheel.
DEFAULT_TORCH = "torch"

# Characters a path may have and still go into a unit line unquoted (no spaces, '%' or '$',
# which systemd would expand).
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


# --- Unit file ---------------------------------------------------------------------------------


def default_source() -> Path:
    """The checkout this module runs from (where ``pyproject.toml`` and ``systemd/`` are)."""
    return Path(__file__).resolve().parents[2]


def read_unit_template(source: Path) -> str:
    path = source / "systemd" / UNIT_NAME
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        raise ServiceError(
            f"the unit template {path} is missing",
            "run this from a checkout of Familiar, or pass --source /path/to/the/checkout",
        ) from None


def render_unit(template: str, *, exec_start: Path, user: str) -> str:
    """The unit with ``ExecStart=`` running ``exec_start`` and ``User=``/``Group=`` set to ``user``."""
    out = []
    seen = set()
    for line in template.splitlines():
        key = line.split("=", 1)[0] if "=" in line and not line.startswith("#") else ""
        if key == "ExecStart":
            line = f"ExecStart={exec_start} run"
        elif key in ("User", "Group"):
            line = f"{key}={user}"
        seen.add(key)
        out.append(line)
    missing = {"ExecStart", "User", "Group"} - seen
    if missing:
        raise ServiceError(
            f"the unit template lacks {', '.join(sorted(missing))}=",
            "restore systemd/familiar.service from the repository",
        )
    return "\n".join(out) + "\n"


# --- Plans -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallOptions:
    user: str = DEFAULT_USER
    prefix: Path = DEFAULT_PREFIX
    source: Path = field(default_factory=default_source)
    python: str = sys.executable  # the interpreter that creates the virtualenv
    torch: str = DEFAULT_TORCH

    @property
    def venv(self) -> Path:
        return self.prefix / ".venv"

    @property
    def exec_start(self) -> Path:
        return self.venv / "bin" / "familiar"

    def validate(self) -> None:
        if not _USER_NAME.match(self.user):
            raise ServiceError(
                f"{self.user!r} is not a valid system user name",
                "use lower-case letters, digits, '_' and '-', starting with a letter (e.g. familiar)",
            )
        if not _SAFE_PATH.match(str(self.prefix)) or self.prefix == Path("/"):
            raise ServiceError(
                f"the prefix {str(self.prefix)!r} must be an absolute path below / without spaces, '%' or '$'",
                "pass e.g. --prefix /opt/familiar",
            )
        if not shlex.split(self.torch):
            raise ServiceError(
                "the PyTorch requirement (--torch / FAMILIAR_TORCH) is empty", "leave it at 'torch'"
            )


@dataclass(frozen=True)
class MachineFacts:
    """What the plan needs to know about the machine; gathered by ``MachineFacts.probe()``."""

    user_exists: bool
    config_exists: bool
    unit_exists: bool
    venv_has_familiar: bool
    systemd_running: bool

    @classmethod
    def probe(cls, options: InstallOptions) -> MachineFacts:
        import pwd

        try:
            pwd.getpwnam(options.user)
            user_exists = True
        except KeyError:
            user_exists = False
        return cls(
            user_exists=user_exists,
            config_exists=(CONFIG_DIR / "familiar.toml").exists(),
            unit_exists=(UNIT_DIR / UNIT_NAME).exists(),
            venv_has_familiar=options.exec_start.exists(),
            systemd_running=Path("/run/systemd/system").is_dir(),
        )


def credentials_readme(options: InstallOptions) -> str:
    return f"""\
Familiar's settings and secrets.

familiar.toml      the settings; every one is shown commented out with its default. The unit
                   points FAMILIAR_CONFIG here. Check it with:
                   {options.exec_start} config check
telegram_token     the bot token from @BotFather
anthropic_api_key  the Anthropic API key (optional)
openai_api_key     the key of the OpenAI-compatible server (optional)

The secrets are systemd credentials (the LoadCredential= lines of {UNIT_DIR / UNIT_NAME}):
systemd reads them as root and hands the service a private copy under $CREDENTIALS_DIRECTORY,
so keep them readable by root only. To write one without it reaching your shell history:

    systemd-ask-password -n "Telegram token:" | install -m 600 /dev/stdin {CONFIG_DIR}/telegram_token

Each secret is optional: the unit gives each a blank SetCredential= fallback, which the daemon
treats as unset (with no Telegram token it stops with a message naming the setting).
After changing a secret: systemctl restart familiar
"""


def install_plan(options: InstallOptions, facts: MachineFacts, template: str) -> list[Step]:
    """Every step of an install, in order. Re-running it upgrades an existing install."""
    options.validate()
    py = str(options.venv / "bin" / "python")
    steps: list[Step] = []
    if not facts.systemd_running:
        steps.append(Note("systemd is not running on this machine: the real install would refuse"))
    if facts.user_exists:
        steps.append(Note(f"user {options.user} exists, keeping it"))
    else:
        useradd: tuple[str, ...] = (
            "useradd",
            "--system",
            "--user-group",
            "--home-dir",
            str(STATE_DIR),
        )
        useradd += ("--no-create-home", "--shell", "/usr/sbin/nologin", options.user)
        steps.append(
            Run(useradd, f"a dedicated system user; its home is the state directory {STATE_DIR}")
        )
    steps += [
        # Owned by root: the service may run the code but never rewrite it.
        MakeDir(options.prefix, 0o755, "the install prefix, owned by root"),
        Run(
            (options.python, "-m", "venv", str(options.venv)),
            "the virtualenv the service runs from",
        ),
        Run(
            (py, "-m", "pip", "install", *shlex.split(options.torch)),
            "PyTorch first, so that you choose its build (set FAMILIAR_TORCH or --torch for CUDA or CPU-only)",
        ),
        Run(
            (py, "-m", "pip", "install", str(options.source)),
            "Familiar itself (a copy: the checkout may move afterwards); torch is already satisfied",
        ),
        MakeDir(CONFIG_DIR, 0o750, "settings and credentials", owner="root", group=options.user),
        WriteFile(
            CONFIG_DIR / "README", credentials_readme(options), 0o644, "what goes in /etc/familiar"
        ),
    ]
    if facts.config_exists:
        steps.append(Note(f"{CONFIG_DIR / 'familiar.toml'} exists, keeping it"))
    else:
        steps.append(
            WriteFile(
                CONFIG_DIR / "familiar.toml",
                render_example(),
                0o640,
                "the settings file (all defaults, commented out)",
                owner="root",
                group=options.user,
            )
        )
    steps += [
        WriteFile(
            UNIT_DIR / UNIT_NAME,
            render_unit(template, exec_start=options.exec_start, user=options.user),
            0o644,
            "the unit",
        ),
        Run(("systemctl", "daemon-reload"), "make systemd read the new unit"),
    ]
    return steps


def uninstall_plan(options: InstallOptions, facts: MachineFacts) -> list[Step]:
    """Stop and remove the service and its virtualenv; data, settings and the user stay."""
    options.validate()
    steps: list[Step] = []
    if facts.unit_exists:
        steps += [
            Run(
                ("systemctl", "disable", "--now", UNIT_NAME),
                "stop the service and stop starting it at boot",
            ),
            Remove(UNIT_DIR / UNIT_NAME, "the unit"),
            Run(("systemctl", "daemon-reload"), "make systemd forget the unit"),
        ]
    else:
        steps.append(Note(f"{UNIT_DIR / UNIT_NAME} does not exist"))
    if facts.venv_has_familiar:
        steps.append(Remove(options.venv, "the virtualenv"))
    else:
        # Only a directory that holds our entry point is removed, so a mistyped --prefix
        # cannot delete something else.
        steps.append(Note(f"no Familiar virtualenv at {options.venv}, leaving it alone"))
    steps.append(
        Note(
            f"kept the data ({STATE_DIR}), settings and credentials ({CONFIG_DIR}) and user "
            f"{options.user}; remove them with: rm -rf {STATE_DIR} {CONFIG_DIR} && userdel {options.user}"
        )
    )
    return steps


def require_root(euid: int, dry_run: bool, what: str) -> None:
    """Refuse a real install/uninstall by anyone but root, before anything is changed."""
    if euid != 0 and not dry_run:
        raise ServiceError(
            f"{what} the service changes /etc, /opt and the user database, so it needs root",
            "run it with sudo, or add --dry-run to see every step without doing any",
        )


def require_systemd(facts: MachineFacts, dry_run: bool) -> None:
    if not facts.systemd_running and not dry_run:
        raise ServiceError(
            "systemd is not running on this machine (no /run/systemd/system)",
            "install on a host booted with systemd, or run `familiar run` under another supervisor",
        )


def next_steps(options: InstallOptions) -> str:
    return f"""\
Installed. Next:
  1. put the Telegram token in place (not through your shell history):
       systemd-ask-password -n "Telegram token:" | install -m 600 /dev/stdin {CONFIG_DIR}/telegram_token
     and likewise {CONFIG_DIR}/anthropic_api_key or {CONFIG_DIR}/openai_api_key
  2. systemctl enable --now familiar
  3. journalctl -u familiar -f      (and `systemctl status familiar`)
"""
