"""Who may talk to the bot: allowed users, admins, invited users, allowed groups, and the audit.

Allowed users and admins come from the settings; people an admin invites (``/invite`` makes a
one-time code that expires; the new person sends ``/start CODE``) are kept in the database.
Groups are served only once an admin has allowed them (``/group on`` in the group); everyone in
an allowed group may address the bot there, in the group's own scope. Strangers get one short
refusal per ``refusal_interval_s`` and an audit row that records the event, never their text;
``prune_audit`` drops the rows past ``telegram.audit_keep_days`` (daily, from the backup job).
"""

from __future__ import annotations

import secrets
import time
from enum import Enum

from memory.db import Database

INVITE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are read aloud
INVITE_LENGTH = 10


class Role(Enum):
    STRANGER = 0
    USER = 1
    ADMIN = 2


class AccessControl:
    def __init__(
        self, db: Database, allowed_users: list[int], admins: list[int], invite_ttl_s: float
    ) -> None:
        self.db = db
        self.admins = set(admins)
        self.configured = set(allowed_users) | self.admins
        self.invite_ttl_s = invite_ttl_s
        self._invited: set[int] = set()
        self._groups: set[int] = set()

    def load(self) -> None:
        """Read invited users and allowed groups (sync: call through ``Database.run``)."""
        with self.db.read() as conn:
            self._invited = {r[0] for r in conn.execute("SELECT user_id FROM access_users")}
            self._groups = {r[0] for r in conn.execute("SELECT chat_id FROM access_groups")}

    def role(self, user_id: int) -> Role:
        if user_id in self.admins:
            return Role.ADMIN
        if user_id in self.configured or user_id in self._invited:
            return Role.USER
        return Role.STRANGER

    def group_allowed(self, chat_id: int) -> bool:
        return chat_id in self._groups

    # -- writes (sync; through Database.run) ------------------------------------------------
    def create_invite(self, admin_id: int, key: str | None = None) -> tuple[str, float]:
        """A new one-time code; ``key`` names the message that asked, so asking again with the
        same message (a replayed update) gives the code it made, not a second one."""
        code = "".join(secrets.choice(INVITE_ALPHABET) for _ in range(INVITE_LENGTH))
        now = time.time()
        expires = now + self.invite_ttl_s
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO access_invites (code, created_by, created_at, expires_at, source_key)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (source_key) WHERE source_key IS NOT NULL"
                " DO NOTHING",
                (code, admin_id, now, expires, key),
            )
            if key is not None:
                row = conn.execute(
                    "SELECT code, expires_at FROM access_invites WHERE source_key = ?", (key,)
                ).fetchone()
                code, expires = str(row[0]), float(row[1])
        return code, expires

    def redeem(self, code: str, user_id: int) -> bool:
        """Admit ``user_id`` with a valid, unused, unexpired code; the code is then spent."""
        code = code.strip().upper()
        if not code or len(code) > 64:
            return False
        now = time.time()
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT created_by FROM access_invites WHERE code = ? AND used_by IS NULL AND expires_at > ?",
                (code, now),
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                "UPDATE access_invites SET used_by = ?, used_at = ? WHERE code = ?",
                (user_id, now, code),
            )
            conn.execute(
                "INSERT OR REPLACE INTO access_users (user_id, added_at, added_by, invite_code) VALUES (?, ?, ?, ?)",
                (user_id, now, row[0], code),
            )
        self._invited.add(user_id)
        return True

    def set_group(self, chat_id: int, allowed: bool, admin_id: int) -> None:
        with self.db.transaction() as conn:
            if allowed:
                conn.execute(
                    "INSERT OR REPLACE INTO access_groups (chat_id, allowed_by, allowed_at) VALUES (?, ?, ?)",
                    (chat_id, admin_id, time.time()),
                )
            else:
                conn.execute("DELETE FROM access_groups WHERE chat_id = ?", (chat_id,))
        if allowed:
            self._groups.add(chat_id)
        else:
            self._groups.discard(chat_id)

    def audit(self, user_id: int | None, chat_id: int | None, event: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO access_audit (at, user_id, chat_id, event) VALUES (?, ?, ?, ?)",
                (time.time(), user_id, chat_id, event[:100]),
            )


def prune_audit(db: Database, keep_s: float, now: float | None = None) -> int:
    """Delete the audit rows older than ``keep_s``; how many went (sync: through Database.run)."""
    cutoff = (time.time() if now is None else now) - keep_s
    with db.transaction() as conn:
        return conn.execute("DELETE FROM access_audit WHERE at < ?", (cutoff,)).rowcount
