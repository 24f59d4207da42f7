"""``familiar ask`` and ``familiar usage`` through the CLI, as a person's shell runs them.

The settings come from ``FAMILIAR_*`` variables; the model is the stub server on 127.0.0.1 spoken
to by the real Anthropic SDK; the data directory is real SQLite in ``tmp_path``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner, Result

from agents.settings import LLMSettings
from bot.cli import app
from tests.agents.conftest import API_KEY
from tests.stubs.anthropic_stub import LLMStub, Reply


def familiar(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def stored_turns(data_dir: Path) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(data_dir / "familiar.db")
    try:
        return conn.execute("SELECT chat_id, role, text FROM messages ORDER BY id").fetchall()
    finally:
        conn.close()


def said_to_model(body: dict) -> list[str]:
    """The texts of the conversation a request sent, in order."""
    out = []
    for m in body["messages"]:
        c = m["content"]
        out.append(c if isinstance(c, str) else "".join(b.get("text", "") for b in c))
    return out


def test_ask_prints_the_answer_and_the_next_ask_remembers_it(
    model: LLMStub, data_dir: Path
) -> None:
    model.script(Reply("Paris is the capital of France."), Reply("Rome."))

    first = familiar("ask", "What is the capital of France?")
    assert first.exit_code == 0, first.output
    assert first.stdout == "Paris is the capital of France.\n"

    second = familiar("ask", "And of Italy?")
    assert second.exit_code == 0, second.output
    assert second.stdout == "Rome.\n"
    # The shell is a chat of its own: the second question reaches the model after the first
    # exchange, and both are stored.
    earlier = said_to_model(model.bodies()[1])
    assert earlier[:2] == ["What is the capital of France?", "Paris is the capital of France."]
    assert earlier[-1].endswith("And of Italy?")
    assert stored_turns(data_dir) == [
        (0, "user", "What is the capital of France?"),
        (0, "assistant", "Paris is the capital of France."),
        (0, "user", "And of Italy?"),
        (0, "assistant", "Rome."),
    ]


def test_ask_json_reports_the_usage_that_usage_then_counts(model: LLMStub) -> None:
    model.script(Reply("Forty-two."))
    result = familiar("ask", "--json", "--user", "5", "What is six times seven?")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["text"] == "Forty-two."
    assert (answer["mode"], answer["calls"], answer["error"]) == ("single", 1, None)
    assert answer["usage"]["input"] > 0 and answer["usage"]["output"] > 0

    usage = familiar("usage", "--json", "--user", "5")
    assert usage.exit_code == 0, usage.output
    summary = json.loads(usage.stdout)
    # Two separate paths agree: the answer's own usage, and the rows `usage` reads back.
    totals = summary["totals"]
    assert totals["calls"] == 1 and totals["failed"] == 0
    assert (totals["input"], totals["output"]) == (
        answer["usage"]["input"],
        answer["usage"]["output"],
    )
    assert summary["daily_budget"] == LLMSettings().daily_token_budget
    assert summary["used_today"] == answer["usage"]["input"] + answer["usage"]["output"]
    # Another user's view is empty.
    other = json.loads(familiar("usage", "--json", "--user", "6").stdout)
    assert other["totals"]["calls"] == 0 and other["used_today"] == 0


def test_usage_text_names_each_purpose_and_the_users_budget(model: LLMStub) -> None:
    model.script(Reply("Yes."))
    assert familiar("ask", "--user", "5", "Is it raining?").exit_code == 0

    result = familiar("usage", "--user", "5", "--days", "7")
    assert result.exit_code == 0, result.output
    first, *rest = result.stdout.splitlines()
    assert "1 calls" in first and "0 failed" in first
    assert any(line.split()[:3] == ["chat", "1", "calls"] for line in rest)
    assert rest[-1].startswith("user 5: ") and rest[-1].endswith(
        f"tokens today of {LLMSettings().daily_token_budget:,}"
    )


def test_usage_on_a_fresh_install_says_nothing_was_spent() -> None:
    result = familiar("usage")
    assert result.exit_code == 0, result.output
    assert "0 calls, 0 tokens" in result.stdout


def test_refused_credentials_exit_1_without_showing_the_key(model: LLMStub, data_dir: Path) -> None:
    model.script(Reply.error(401, message="invalid x-api-key"))
    result = familiar("ask", "hello")
    assert result.exit_code == 1
    assert "credentials" in result.output
    assert API_KEY not in result.output
    # The failed call is counted as failed, so the person can see what happened.
    summary = json.loads(familiar("usage", "--json").stdout)
    assert summary["totals"]["failed"] == 1


def test_think_with_a_clean_critique_answers_with_the_draft_in_two_calls(
    model: LLMStub,
) -> None:
    clean = {"score": 9, "verdict": "approve", "issues": [], "summary": "Correct and complete."}
    model.script(Reply("Day 1: Colosseum. Day 2: Vatican."), Reply(json=clean))

    result = familiar("ask", "--think", "--json", "Plan two days in Rome")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["text"] == "Day 1: Colosseum. Day 2: Vatican."
    assert answer["mode"] == "think"
    assert answer["calls"] == 2 == len(model.bodies())  # no refine call after a clean critique
    assert answer["review"]["outcome"] == "clean"
    assert answer["run_id"] is not None  # the transcript is stored for /review's buttons


def test_think_and_review_together_are_refused_before_any_call(model: LLMStub) -> None:
    result = familiar("ask", "--think", "--review", "anything")
    assert result.exit_code == 2
    assert "choose --think or --review, not both" in result.output
    assert model.bodies() == []


def test_usage_refuses_zero_days() -> None:
    result = familiar("usage", "--days", "0")
    assert result.exit_code == 2


def test_an_answer_cut_off_mid_stream_prints_the_whole_error(model: LLMStub) -> None:
    # The first words were already printed when the stream broke: the error that follows is a
    # message of its own, not the rest of the answer, so none of it may be cut away.
    model.script(Reply("one two three four five six seven eight nine ten", fault="cut"))
    result = familiar("ask", "count to ten")
    assert result.exit_code == 1
    first, second = result.stdout.splitlines()
    assert first.strip() == "one two three"
    assert second.startswith("The model provider is overloaded or unreachable right now.")
