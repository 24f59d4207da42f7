"""The review engine: an author drafts, reviewers score and critique, the author revises.

One engine serves two modes. The review panel (``/review``) has several reviewer personas from
the settings, run concurrently each round; it stops when every reviewer approves, when the mean
score reaches the threshold, or after the last round. Three-pass (``/think``, after Self-Refine)
is the same loop with the author as its only reviewer, one round, and a final revision unless the
critique is clean, in which case the draft is returned and the third call never made.

The author's own critique continues the author's conversation (same system prompt and turns,
the draft as an assistant turn), so the three calls share a cached prefix: the draft and critique
calls ask the provider to cache their whole prompt (``cache_tail``), which the next call reads at
the cache price. Panel reviewers get a prompt of their own. Reviews are JSON against
``REVIEW_SCHEMA``, sent as a structured-output schema where the provider takes one. The
self-critique is the exception where the provider keys its prompt cache on the schema
(Anthropic): there an enforced schema would make the critique miss the cached draft prompt and
pay for all of it again, so by default (``LLMSettings.critique_schema``) the schema is described in
the prompt and the reply validated. Output that does not parse gets one repair request; after
that it counts as "revise" with the raw text attached. Every run is stored in ``review_runs``
with its transcript (rounds, scores, tokens; ``agents.review_runs``). The prompts, the review
schema and the reading of a reviewer's reply live in ``agents.review_format`` (re-exported here); the modes that only
review a finished artefact (an assessment, blind A/B judgement) in ``agents.review_verdicts``.
What is left here, past 400 lines, is one concern: the engine's calls and its loop (draft,
review with one repair, revise, store), kept whole so the cache layout reads in one place.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Literal, TypeVar

from loguru import logger

from agents.errors import (
    BadModelOutput,
    BudgetExceeded,
    DeadlineExceeded,
    LLMError,
    ProviderAuthError,
)
from agents.llm import LLM
from agents.providers.base import Completion, Effort, LLMRequest, Usage
from agents.review_format import (
    JSON_INSTRUCTIONS,
    REFINE,
    REPAIR,
    REVIEW_SCHEMA,
    REVISE,
    SCHEMA_NOTE,
    SELF,
    SELF_CRITIQUE,
    Issue,
    Review,
    ReviewResult,
    Round,
    Severity,
    combined_critique,
    parse_review,
)
from agents.review_runs import ReviewRuns
from agents.settings import LLMSettings, ReviewerPersona, ReviewSettings
from agents.usage import CallContext
from memory.context import with_recalled
from memory.db import Database

Progress = Callable[[str], Awaitable[None]]
T = TypeVar("T")
__all__ = [
    "JSON_INSTRUCTIONS",
    "REFINE",
    "REPAIR",
    "REVIEW_SCHEMA",
    "REVISE",
    "SCHEMA_NOTE",
    "SELF",
    "SELF_CRITIQUE",
    "Issue",
    "Progress",
    "Review",
    "ReviewEngine",
    "ReviewResult",
    "Round",
    "Severity",
    "combined_critique",
    "parse_review",
]


# Writes the first draft instead of a plain author call: the chat agent's agent loop, so the
# draft may use tools (critique, reviews and revisions never do). Gets the draft request (with
# the pass's temperature and effort set), the call context and the author's model.
Drafter = Callable[[LLMRequest, CallContext, LLM], Awaitable[Completion]]


class ReviewEngine:
    def __init__(
        self,
        llm: LLM,
        settings: ReviewSettings,
        llm_settings: LLMSettings,
        db: Database | None = None,
    ) -> None:
        self.llm = llm
        self.settings = settings
        self.llm_settings = llm_settings
        self.db = db

    # -- public modes --------------------------------------------------------------------
    async def three_pass(
        self,
        question: str,
        ctx: CallContext,
        *,
        system_prefix: str = "",
        system: str = "",
        history: list[dict[str, str]] | None = None,
        recalled: str = "",
        progress: Progress | None = None,
        author: LLM | None = None,
        drafter: Drafter | None = None,
    ) -> ReviewResult:
        """Draft, self-critique, refine (skipped when the critique is clean). ``recalled``
        memories go with the question (see ``memory.context.with_recalled``); ``author``, when
        given (a persona's model), writes the draft and the refinement, and the engine's own
        model critiques."""
        return await self._run(
            "three_pass",
            question,
            ctx,
            [SELF],
            max_rounds=1,
            threshold=None,
            final_revision=True,
            system_prefix=system_prefix,
            system=system,
            history=history or [],
            recalled=recalled,
            progress=progress,
            author=author,
            drafter=drafter,
        )

    async def panel(
        self,
        task: str,
        ctx: CallContext,
        *,
        reviewers: list[ReviewerPersona] | None = None,
        max_rounds: int | None = None,
        threshold: float | None = None,
        system_prefix: str = "",
        system: str = "",
        history: list[dict[str, str]] | None = None,
        recalled: str = "",
        progress: Progress | None = None,
        resume: tuple[str, list[Review]] | None = None,
        author: LLM | None = None,
        drafter: Drafter | None = None,
    ) -> ReviewResult:
        """The review panel: rounds of concurrent reviews and revisions until approval.

        ``resume`` (a draft and its reviews) starts with a revision instead of a fresh draft;
        ``author`` (a persona's model) writes the drafts and revisions, the reviewers stay on the
        engine's model.
        """
        return await self._run(
            "panel",
            task,
            ctx,
            reviewers or self.settings.reviewers,
            max_rounds=max_rounds or self.settings.max_rounds,
            threshold=self.settings.approve_mean_score if threshold is None else threshold,
            final_revision=False,
            system_prefix=system_prefix,
            system=system,
            history=history or [],
            recalled=recalled,
            progress=progress,
            resume=resume,
            author=author,
            drafter=drafter,
        )

    # -- the loop ------------------------------------------------------------------------
    async def _run(
        self,
        kind: Literal["three_pass", "panel"],
        task: str,
        ctx: CallContext,
        reviewers: list[ReviewerPersona],
        *,
        max_rounds: int,
        threshold: float | None,
        final_revision: bool,
        system_prefix: str,
        system: str,
        history: list[dict[str, str]],
        progress: Progress | None,
        recalled: str = "",
        resume: tuple[str, list[Review]] | None = None,
        author: LLM | None = None,
        drafter: Drafter | None = None,
    ) -> ReviewResult:
        temps = self.llm_settings.three_pass_temperatures
        efforts = self.llm_settings.three_pass_efforts
        base = LLMRequest(
            messages=[*history, {"role": "user", "content": with_recalled(recalled, task)}],
            system=system,
            system_prefix=system_prefix,
            max_tokens=self.llm_settings.max_output_tokens,
            cache_turns=len(history),
        )
        total, calls = Usage(), 0
        rounds: list[Round] = []

        async def say(text: str) -> None:
            if progress is not None:
                await progress(text)

        if resume is None:
            await say("drafting")
            # The critique or revision that may follow extends this prompt: cache all of it.
            draft = await self._author(
                base.with_(cache_tail=True),
                temps[0],
                efforts[0],
                ctx.for_("draft"),
                author,
                drafter,
            )
        else:
            await say("revising")
            draft = await self._revise(
                base, resume[0], resume[1], ctx, self_review=False, author=author
            )
        total, calls = total + draft.usage, calls + 1
        outcome = "max_rounds"
        refine_usage: Usage | None = None
        final_text = draft.text
        for number in range(1, max_rounds + 1):
            current = Round(number, final_text, draft.usage)
            rounds.append(current)
            await say("critiquing" if kind == "three_pass" else f"round {number}: reviewing")
            current.reviews = list(
                await asyncio.gather(
                    *(self._review(r, task, final_text, base, ctx) for r in reviewers)
                )
            )
            for r in current.reviews:
                total, calls = total + r.usage, calls + r.calls
            if all(r.clean for r in current.reviews):
                outcome = "clean" if kind == "three_pass" else "approved"
                break
            if threshold is not None and current.mean_score >= threshold:
                outcome = "threshold"
                break
            if number == max_rounds and not final_revision:
                break
            await say("refining" if kind == "three_pass" else f"round {number}: revising")
            draft = await self._revise(
                base,
                final_text,
                current.reviews,
                ctx,
                self_review=kind == "three_pass",
                author=author,
            )
            total, calls = total + draft.usage, calls + 1
            final_text = draft.text
            if kind == "three_pass":
                refine_usage = draft.usage
                outcome = "refined"
        result = ReviewResult(kind, task, final_text, outcome, rounds, total, calls, refine_usage)
        result.run_id = await self._store(result, ctx)
        return result

    async def _author(
        self,
        request: LLMRequest,
        temperature: float,
        effort: Effort,
        ctx: CallContext,
        author: LLM | None = None,
        drafter: Drafter | None = None,
    ) -> Completion:
        llm = author or self.llm
        caps = llm.capabilities
        request = request.with_(
            temperature=temperature if caps.temperature else None,
            effort=effort if caps.effort else None,
        )
        if drafter is not None:
            result = await drafter(request, ctx, llm)
        else:
            result = await llm.complete(request, ctx)
        if not result.text.strip():
            reason = "refused" if result.refused else "returned nothing"
            logger.warning("author call for {} {}", ctx.purpose, reason)
            raise BadModelOutput(f"the model {reason} (stop reason: {result.stop_reason})")
        if result.truncated:
            logger.info("author call for {} hit max_tokens; keeping the partial text", ctx.purpose)
        return result

    async def _revise(
        self,
        base: LLMRequest,
        draft: str,
        reviews: list[Review],
        ctx: CallContext,
        *,
        self_review: bool,
        author: LLM | None = None,
    ) -> Completion:
        if self_review:
            review = reviews[0]
            critique_json = (
                json.dumps(
                    {
                        "score": review.score,
                        "verdict": "approve" if review.approve else "revise",
                        "issues": [asdict(i) for i in review.issues],
                        "summary": review.summary,
                    }
                )
                if not review.malformed
                else (review.raw or "")
            )
            messages = [
                *base.messages,
                {"role": "assistant", "content": draft},
                {"role": "user", "content": self._critique_prompt()},
                {"role": "assistant", "content": critique_json},
                {"role": "user", "content": REFINE},
            ]
        else:
            messages = [
                *base.messages,
                {"role": "assistant", "content": draft},
                {"role": "user", "content": REVISE.format(critique=combined_critique(reviews))},
            ]
        temps, efforts = (
            self.llm_settings.three_pass_temperatures,
            self.llm_settings.three_pass_efforts,
        )
        # Refine extends the critique's prompt: its breakpoint at the end reads that from the cache
        # (a breakpoint is where the cache is looked up, so one is needed to read; it writes a few
        # tokens nothing reads). A panel revision shares only the base prompt with earlier calls.
        return await self._author(
            base.with_(messages=messages, cache_tail=self_review),
            temps[2],
            efforts[2],
            ctx.for_("refine" if self_review else "revise"),
            author,
        )

    def _critique_enforced(self) -> bool:
        """Whether the self-critique sends its schema as structured output (see the docstring)."""
        caps, mode = self.llm.capabilities, self.llm_settings.critique_schema
        if not caps.json_schema or mode == "prompt":
            return False
        return mode == "enforced" or not caps.schema_in_cache_key

    def _critique_prompt(self) -> str:
        # Identical in the critique and refine calls, so the refine call reads it from the cache.
        return SELF_CRITIQUE + (SCHEMA_NOTE if self._critique_enforced() else JSON_INSTRUCTIONS)

    def _review_request(
        self, reviewer: ReviewerPersona, task: str, draft: str, base: LLMRequest
    ) -> LLMRequest:
        caps = self.llm.capabilities
        common: dict[str, Any] = {
            "max_tokens": self.settings.max_review_tokens,
            "json_schema": REVIEW_SCHEMA if caps.json_schema else None,
        }
        if reviewer is SELF:
            temps, efforts = (
                self.llm_settings.three_pass_temperatures,
                self.llm_settings.three_pass_efforts,
            )
            common["json_schema"] = REVIEW_SCHEMA if self._critique_enforced() else None
            return base.with_(
                messages=[
                    *base.messages,
                    {"role": "assistant", "content": draft},
                    {"role": "user", "content": self._critique_prompt()},
                ],
                temperature=temps[1] if caps.temperature else None,
                effort=efforts[1] if caps.effort else None,
                cache_tail=True,
                **common,
            )  # the refine call extends this prompt
        system = (
            f"You are the {reviewer.name} reviewer on a review panel. Your focus: "
            f"{reviewer.focus}. Scoring rubric: {reviewer.rubric}. Judge only your focus. "
            + JSON_INSTRUCTIONS
        )
        prompt = f"The task:\n{task}\n\nThe answer under review:\n{draft}"
        return LLMRequest(
            messages=[{"role": "user", "content": prompt}],
            system_prefix=system,
            temperature=self.settings.reviewer_temperature if caps.temperature else None,
            effort=self.settings.reviewer_effort if caps.effort else None,
            **common,
        )

    async def review(
        self, reviewer: ReviewerPersona, task: str, subject: str, ctx: CallContext
    ) -> Review:
        """One panel reviewer's review of ``subject`` against ``task`` (repaired once, as in a
        panel round); for modes that review a finished artefact (``agents.review_verdicts``)."""
        base = LLMRequest(messages=[{"role": "user", "content": task}])
        return await self._review(reviewer, task, subject, base, ctx)

    async def _review(
        self, reviewer: ReviewerPersona, task: str, draft: str, base: LLMRequest, ctx: CallContext
    ) -> Review:
        purpose = "critique" if reviewer is SELF else f"review:{reviewer.name}"
        request = self._review_request(reviewer, task, draft, base)

        def unreadable(exc: ValueError, raw: str) -> Review:
            logger.warning(
                "reviewer {} output still malformed ({}); counting as revise", reviewer.name, exc
            )
            return Review(
                reviewer.name,
                0.0,
                False,
                [Issue("major", "the review could not be read")],
                raw=raw,
                malformed=True,
            )

        def failed(exc: LLMError, raw: str | None) -> Review:
            logger.warning("reviewer {} failed: {}", reviewer.name, exc)
            return Review(
                reviewer.name,
                0.0,
                False,
                [Issue("major", f"the reviewer failed: {exc}")],
                raw=raw,
                malformed=True,
            )

        review, usage, calls = await complete_with_repair(
            self.llm,
            request,
            ctx,
            purpose,
            who=f"reviewer {reviewer.name}",
            parse=lambda text: parse_review(reviewer.name, text),
            instructions=JSON_INSTRUCTIONS,
            unreadable=unreadable,
            failed=failed,
        )
        review.usage, review.calls = usage, calls
        return review

    # -- storage -------------------------------------------------------------------------
    async def _store(self, result: ReviewResult, ctx: CallContext) -> int | None:
        return await self.store_run(
            result.kind,
            result.task,
            result.outcome,
            len(result.rounds),
            result.final,
            result.transcript(),
            result.usage,
            ctx,
        )

    async def store_run(
        self,
        kind: str,
        task: str,
        outcome: str,
        rounds: int,
        final: str,
        transcript: dict[str, Any],
        usage: Usage,
        ctx: CallContext,
    ) -> int | None:
        """One row of ``review_runs`` (any mode's run); its id, or None without a database."""
        if self.db is None:
            return None
        runs = ReviewRuns(self.db)
        return await self.db.run(
            runs.insert,
            kind,
            ctx.chat_id,
            ctx.user_id,
            task,
            outcome,
            rounds,
            final,
            transcript,
            usage,
        )

    def load_transcript(self, run_id: int) -> dict[str, Any] | None:
        """The stored transcript ("show the critique"), or None."""
        return ReviewRuns(self.db).load(run_id) if self.db is not None else None

    def set_decision(self, run_id: int, decision: Literal["accepted", "rejected"]) -> bool:
        """Record the accept / reject button; False when the run does not exist."""
        return ReviewRuns(self.db).set_decision(run_id, decision) if self.db is not None else False

    async def one_more_round(
        self, run_id: int, ctx: CallContext, progress: Progress | None = None
    ) -> ReviewResult:
        """The "one more round" button: revise the stored panel result, then review it again."""
        stored = self.load_transcript(run_id)
        if stored is None or stored["kind"] != "panel":
            raise LLMError(f"there is no review panel run {run_id}")
        last = stored["rounds"][-1]
        reviews = [
            Review(
                v["reviewer"],
                v["score"],
                v["approve"],
                [Issue(i["severity"], i["text"]) for i in v["issues"]],
                v.get("summary", ""),
                v.get("raw"),
                v.get("malformed", False),
            )
            for v in last["reviews"]
        ]
        return await self.panel(
            stored["task"], ctx, max_rounds=1, progress=progress, resume=(stored["final"], reviews)
        )


async def complete_with_repair(
    llm: LLM,
    request: LLMRequest,
    ctx: CallContext,
    purpose: str,
    *,
    who: str,
    parse: Callable[[str], T],
    instructions: str,
    unreadable: Callable[[ValueError, str], T],
    failed: Callable[[LLMError, str | None], T],
) -> tuple[T, Usage, int]:
    """Ask ``request`` and ``parse`` the reply; an unparseable reply is shown back to the model
    with ``REPAIR`` + ``instructions`` once (a reviewer's or a judge's verdict).

    Returns the parsed value, or ``unreadable(error, raw)`` when the repair is unreadable too, or
    ``failed(error, raw)`` when a call fails, with the usage and the number of calls made. A
    deadline, budget or authentication error is raised: the other reviewers would fail alike.
    """
    usage, calls, text = Usage(), 0, ""
    try:
        first = await llm.complete(request, ctx.for_(purpose))
        usage, calls, text = usage + first.usage, calls + 1, first.text
        try:
            return parse(text), usage, calls
        except ValueError as exc:
            logger.info("{} gave unreadable output ({}); asking once to repair", who, exc)
            repair = request.with_(
                messages=[
                    *request.messages,
                    {"role": "assistant", "content": text or "(empty)"},
                    {"role": "user", "content": REPAIR.format(error=exc) + instructions},
                ]
            )
        second = await llm.complete(repair, ctx.for_(purpose + ":repair"))
        usage, calls = usage + second.usage, calls + 1
        try:
            return parse(second.text), usage, calls
        except ValueError as exc2:
            return unreadable(exc2, second.text or text), usage, calls
    except (DeadlineExceeded, BudgetExceeded, ProviderAuthError):
        raise
    except LLMError as exc:  # one model down, overloaded or refusing
        return failed(exc, text or None), usage, calls
