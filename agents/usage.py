"""What every model call cost, and the per-user daily token budget checked before each call.

Rows go to ``llm_usage`` (see ``agents.schema``). Budgets count every token of a call (input,
cached input and output) per UTC day; admins are exempt unless ``admin_daily_token_budget`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from agents.errors import BudgetExceeded
from agents.providers.base import Usage
from agents.settings import LLMSettings
from memory.db import Database


@dataclass(frozen=True)
class CallContext:
    """Who a call is for and why; recorded with its usage."""

    user_id: int | None = None
    chat_id: int | None = None
    purpose: str = "chat"
    is_admin: bool = False

    def for_(self, purpose: str) -> CallContext:
        return CallContext(self.user_id, self.chat_id, purpose, self.is_admin)


@dataclass
class UsageRecord:
    ctx: CallContext
    provider: str
    model: str
    usage: Usage
    latency_s: float
    ok: bool = True
    error: str | None = None


def estimate_cost(settings: LLMSettings, model: str, usage: Usage) -> float:
    """US dollars from the price table; a model missing from it costs 0 (and is logged by callers)."""
    price = settings.prices.get(model)
    if price is None:  # "claude-sonnet-4-5-20250929" priced as "claude-sonnet-4-5"
        price = next((p for name, p in settings.prices.items() if model.startswith(name)), None)
    if price is None:
        return 0.0
    return (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
    ) / 1_000_000


def counted(input_tokens: int, output_tokens: int, cache_read: int, cache_write: int) -> int:
    """Tokens as the daily budget counts them: prompt tokens read from the cache count a tenth,
    as they are priced; everything else in full. Otherwise a long cached conversation would use
    up a budget at ten times what it costs."""
    return int(input_tokens + output_tokens + cache_write + cache_read // 10)


class UsageStore:
    def __init__(
        self,
        db: Database,
        settings: LLMSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    # -- budgets -------------------------------------------------------------------------
    def budget_for(self, ctx: CallContext) -> int | None:
        if ctx.is_admin:
            return self.settings.admin_daily_token_budget
        return self.settings.daily_token_budget

    def tokens_today(self, user_id: int) -> int:
        """Tokens counted against the budget today (see ``counted``)."""
        day = self.clock().date().isoformat()
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
                " coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_write_tokens), 0)"
                " FROM llm_usage WHERE user_id = ? AND day = ?",
                (user_id, day),
            ).fetchone()
        return counted(*row)

    def daily(self, user_id: int, days: int = 7) -> list[tuple[date, int]]:
        """(UTC day, tokens counted against the budget) for the last ``days`` days, oldest
        first, every day present (0 where nothing was used)."""
        today = self.clock().date()
        first = today - timedelta(days=days - 1)
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT day, coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
                " coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_write_tokens), 0)"
                " FROM llm_usage WHERE user_id = ? AND day >= ? GROUP BY day",
                (user_id, first.isoformat()),
            ).fetchall()
        used = {r[0]: counted(*r[1:]) for r in rows}
        return [
            (first + timedelta(days=i), used.get((first + timedelta(days=i)).isoformat(), 0))
            for i in range(days)
        ]

    def check_budget(self, ctx: CallContext) -> None:
        """Raise BudgetExceeded before a call when the user has spent the day's tokens."""
        budget = self.budget_for(ctx)
        if budget is None or ctx.user_id is None:
            return
        spent = self.tokens_today(ctx.user_id)
        if spent >= budget:
            reset = (self.clock() + timedelta(days=1)).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            left = reset - self.clock()
            hours = int(left.total_seconds() // 3600)
            raise BudgetExceeded(
                f"you have used today's {budget:,} tokens ({spent:,} spent); "
                f"the budget resets at 00:00 UTC, in {hours} h {int(left.total_seconds() % 3600 // 60)} min",
                "an admin can raise FAMILIAR_LLM__DAILY_TOKEN_BUDGET",
            )

    async def acheck_budget(self, ctx: CallContext) -> None:
        await self.db.run(self.check_budget, ctx)

    # -- recording -----------------------------------------------------------------------
    def record(self, rec: UsageRecord) -> int:
        now = self.clock()
        u = rec.usage
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO llm_usage (ts, day, user_id, chat_id, purpose, provider, model,"
                " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,"
                " latency_ms, ok, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    now.isoformat(),
                    now.date().isoformat(),
                    rec.ctx.user_id,
                    rec.ctx.chat_id,
                    rec.ctx.purpose,
                    rec.provider,
                    rec.model,
                    u.input_tokens,
                    u.output_tokens,
                    u.cache_read_tokens,
                    u.cache_write_tokens,
                    estimate_cost(self.settings, rec.model, u),
                    int(rec.latency_s * 1000),
                    int(rec.ok),
                    rec.error,
                ),
            )
            return int(cur.lastrowid or 0)

    async def arecord(self, rec: UsageRecord) -> int:
        return await self.db.run(self.record, rec)

    def summary(
        self, user_id: int | None = None, days: int = 1, is_admin: bool = False
    ) -> dict[str, Any]:
        """Totals since the start of the UTC day ``days - 1`` days ago, per purpose and overall."""
        since = (self.clock().date() - timedelta(days=days - 1)).isoformat()
        where, args = "day >= ?", [since]
        if user_id is not None:
            where += " AND user_id = ?"
            args.append(user_id)  # type: ignore[arg-type]
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT purpose, count(*), sum(input_tokens), sum(output_tokens),"
                " sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd), sum(1 - ok)"
                f" FROM llm_usage WHERE {where} GROUP BY purpose ORDER BY purpose",
                args,
            ).fetchall()
        per_purpose = {
            r[0]: {
                "calls": r[1],
                "input": r[2],
                "output": r[3],
                "cache_read": r[4],
                "cache_write": r[5],
                "cost_usd": round(r[6], 6),
                "failed": r[7],
            }
            for r in rows
        }
        totals = {
            k: sum(p[k] for p in per_purpose.values())
            for k in ("calls", "input", "output", "cache_read", "cache_write", "failed")
        }
        totals["cost_usd"] = round(sum(p["cost_usd"] for p in per_purpose.values()), 6)
        totals["tokens"] = (
            totals["input"] + totals["output"] + totals["cache_read"] + totals["cache_write"]
        )
        totals["counted"] = counted(
            totals["input"], totals["output"], totals["cache_read"], totals["cache_write"]
        )
        for p in per_purpose.values():
            p["counted"] = counted(p["input"], p["output"], p["cache_read"], p["cache_write"])
        out: dict[str, Any] = {"since": since, "totals": totals, "per_purpose": per_purpose}
        if user_id is not None:
            out["user_id"] = user_id
            ctx = CallContext(user_id=user_id, is_admin=is_admin)
            out["daily_budget"] = self.budget_for(ctx)
            out["used_today"] = self.tokens_today(user_id)
        return out
