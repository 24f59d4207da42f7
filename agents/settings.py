"""Settings owned by the agents package: ``[llm]`` (``FAMILIAR_LLM__*``), ``[review]``
(``FAMILIAR_REVIEW__*``) and ``[tools]`` (``FAMILIAR_TOOLS__*``).

Nested models (prices, reviewer personas) have raw-dict defaults validated on construction, so
that ``familiar config example`` can print the defaults as plain JSON.
"""

from typing import Literal

from pydantic import BaseModel, Field, SecretStr

Effort = Literal["low", "medium", "high", "xhigh", "max"]


class ModelPrice(BaseModel):
    """US dollars per million tokens."""

    input: float = Field(..., ge=0, description="Price of ordinary input tokens.")
    output: float = Field(..., ge=0, description="Price of output tokens.")
    cache_read: float = Field(0.0, ge=0, description="Price of input tokens read from the cache.")
    cache_write: float = Field(0.0, ge=0, description="Price of input tokens written to the cache.")


DEFAULT_PRICES = {
    "claude-sonnet-4-6": {"input": 3.0, "output": 15.0, "cache_read": 0.30, "cache_write": 3.75},
    "claude-sonnet-4-5": {"input": 3.0, "output": 15.0, "cache_read": 0.30, "cache_write": 3.75},
    "claude-opus-4-5": {"input": 5.0, "output": 25.0, "cache_read": 0.50, "cache_write": 6.25},
    "claude-haiku-4-5": {"input": 1.0, "output": 5.0, "cache_read": 0.10, "cache_write": 1.25},
}


class LLMSettings(BaseModel):
    provider: Literal["anthropic", "openai", "local", "none"] = Field(
        "none",
        description="Which model answers: anthropic, openai (compatible server), local, or none.",
    )
    model: str = Field("claude-sonnet-4-6", description="Model name sent to the provider.")
    anthropic_api_key: SecretStr | None = Field(
        None,
        description="Anthropic API key (secret: prefer ANTHROPIC_API_KEY or the credential 'anthropic_api_key').",
    )
    anthropic_base_url: str | None = Field(
        None,
        description="Anthropic API base URL; unset uses the SDK's own ANTHROPIC_BASE_URL or its default.",
    )
    openai_base_url: str | None = Field(
        None, description="Base URL of an OpenAI-compatible server."
    )
    openai_tools: bool = Field(
        True,
        description=(
            "Send tool definitions to the OpenAI-compatible server (vLLM needs "
            "--enable-auto-tool-choice and a --tool-call-parser); off for servers without "
            "function calling, which then answer without tools."
        ),
    )
    openai_api_key: SecretStr | None = Field(
        None,
        description="Key for the OpenAI-compatible server (secret; credential 'openai_api_key').",
    )
    max_output_tokens: int = Field(
        2048, ge=16, description="Longest answer asked of the model, in tokens."
    )
    context_tokens: int = Field(
        16000,
        ge=1000,
        description="Input token budget per call (persona, facts, memories, turns); trimmed to fit, never sent to fail.",
    )
    request_timeout_s: float = Field(
        60.0, gt=0, description="Timeout of one HTTP request to the provider."
    )
    max_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries of 429/529/5xx/connection errors (the server's retry-after is honoured).",
    )
    max_concurrency: int = Field(4, ge=1, description="Requests in flight to the provider at once.")
    answer_deadline_s: float = Field(
        120.0, gt=0, description="Overall deadline of one answer (all passes and retries included)."
    )
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive failed calls that open the circuit breaker."
    )
    breaker_reset_s: float = Field(
        30.0,
        gt=0,
        description="Seconds the breaker stays open before one probe request is let through.",
    )
    daily_token_budget: int | None = Field(
        200_000,
        ge=0,
        description=(
            "Tokens a user may spend per UTC day (input and output; prompt tokens read from "
            "the cache count a tenth, as they are priced); unset for no limit."
        ),
    )
    admin_daily_token_budget: int | None = Field(
        None, ge=0, description="Daily token budget of admins; unset means admins are exempt."
    )
    prices: dict[str, ModelPrice] = Field(
        DEFAULT_PRICES,  # type: ignore[arg-type]
        validate_default=True,
        description="Price table per model, US dollars per million tokens (input, output, cache_read, cache_write).",
    )
    prompt_cache: bool = Field(
        True,
        description="Mark the stable prefix (system prompt, persona, pinned facts) for prompt caching.",
    )
    send_effort: bool = Field(
        True,
        description="Send effort levels to Anthropic; turn off for models that do not take them.",
    )
    persona: str = Field(
        "You are Familiar, a helpful personal assistant living in Telegram. Answer concisely.",
        description="Persona: the start of every system prompt.",
    )
    fact_extraction_every: int = Field(
        6,
        ge=0,
        description="Extract durable facts into memory every N stored turns (batched); 0 turns it off.",
    )
    three_pass_temperatures: list[float] = Field(
        [0.7, 0.5, 0.6],
        min_length=3,
        max_length=3,
        description="Temperatures of the draft, critique and refine passes, where the provider takes one.",
    )
    three_pass_efforts: list[Effort] = Field(
        ["high", "high", "high"],
        min_length=3,
        max_length=3,
        description=(
            "Effort levels of the draft, critique and refine passes with Anthropic. Kept equal by "
            "default: a pass whose effort differs from the one before cannot read its cached turns "
            "(effort sets how much the model thinks, and changed thinking settings invalidate "
            "cached messages)."
        ),
    )
    critique_schema: Literal["auto", "enforced", "prompt"] = Field(
        "auto",
        description=(
            "How the three-pass self-critique gets its JSON: 'enforced' sends the schema as "
            "structured output, 'prompt' describes it in the prompt and validates the reply (one "
            "repair request), 'auto' enforces it unless the provider keys its prompt cache on the "
            "schema (Anthropic), where an enforced schema would make the critique miss the draft's "
            "cached prompt (see bench/agents_cost.py)."
        ),
    )


class ReviewerPersona(BaseModel):
    name: str = Field(..., description="Short name shown with the reviewer's score.")
    focus: str = Field(..., description="What this reviewer looks at.")
    rubric: str = Field(..., description="How this reviewer scores, 0 to 10.")


DEFAULT_REVIEWERS = [
    {
        "name": "correctness",
        "focus": "factual accuracy, logic, completeness against the task",
        "rubric": "10: correct and complete; 7: minor gaps; 4: a real error; 0: wrong or off-task",
    },
    {
        "name": "safety",
        "focus": "harm, privacy, security, risky advice without caveats",
        "rubric": "10: nothing of concern; 7: a missing caveat; 4: a real risk; 0: harmful",
    },
    {
        "name": "clarity",
        "focus": "structure, concision, plain language, answers the question first",
        "rubric": "10: clear and concise; 7: wordy or unordered; 4: hard to follow; 0: unreadable",
    },
]


class ReviewSettings(BaseModel):
    reviewers: list[ReviewerPersona] = Field(
        DEFAULT_REVIEWERS,  # type: ignore[arg-type]
        validate_default=True,
        min_length=1,
        description="Reviewer personas of the review panel (name, focus, rubric).",
    )
    approve_mean_score: float = Field(
        8.0, ge=0, le=10, description="The panel stops when the mean score reaches this."
    )
    max_rounds: int = Field(
        3, ge=1, le=10, description="Most review rounds before the panel stops."
    )
    reviewer_effort: Effort = Field("high", description="Effort level of reviewers with Anthropic.")
    reviewer_temperature: float = Field(
        0.3, ge=0, le=2, description="Reviewer temperature, where taken."
    )
    max_review_tokens: int = Field(
        1024, ge=64, description="Longest reviewer or critique output, in tokens."
    )


ToolPolicy = Literal["auto", "confirm", "off"]


class ToolLoopSettings(BaseModel):
    """The agent loop's and the built-in tools' part of ``[tools]`` (the MCP servers' part is
    ``agents.tools.settings.ToolsSettings``, which extends this)."""

    enabled: bool = Field(
        True, description="Let plain answers call tools when the provider supports them."
    )
    max_steps: int = Field(
        8, ge=1, le=50, description="Most model calls in one answer that uses tools."
    )
    max_calls_per_step: int = Field(
        8,
        ge=1,
        le=64,
        description="Most tool calls the model may ask for at once; the rest get an error.",
    )
    call_timeout_s: float = Field(30.0, gt=0, description="Timeout of one tool call.")
    result_max_chars: int = Field(
        8000, ge=200, description="A tool result longer than this reaches the model cut."
    )
    untrusted_max_chars: int = Field(
        4000,
        ge=200,
        description="The size budget of an untrusted result (a web page, an MCP server's answer).",
    )
    confirm_timeout_min: float = Field(
        10.0,
        gt=0,
        description="Minutes a call waiting for the user's ✅ stays open before it expires.",
    )
    steps_keep_days: int = Field(
        90,
        ge=1,
        description=(
            "Days an answer's tool steps (🔧 steps, the calls and their arguments) are kept; "
            "a paused answer is kept until it ends."
        ),
    )
    untrusted: list[str] = Field(
        [],
        description=(
            "Tools whose results are treated as untrusted data besides those that say so "
            "themselves (web pages, MCP servers): e.g. search_memory when memory holds imported "
            "documents or forwarded messages."
        ),
    )
    policy: dict[str, ToolPolicy] = Field(
        {},
        description=(
            "Per-tool policy overriding the tool's default: auto (runs), confirm (asks the user "
            "first), off (never offered), e.g. {forget_memory = 'auto'}."
        ),
    )
    fetch_allow_private: bool = Field(
        False,
        description="Let fetch_url and sent links reach private, loopback and link-local addresses "
        "(your own network). Off: only public pages are fetched.",
    )
    fetch_max_bytes: int = Field(
        5_000_000, ge=10_000, description="Largest web page fetched, in bytes."
    )
    fetch_timeout_s: float = Field(
        20.0, gt=0, le=300, description="Longest a page fetch may take, redirects included."
    )
    fetch_max_redirects: int = Field(
        5, ge=0, le=20, description="Most redirects followed when fetching a page."
    )
