"""How Familiar thinks: LLM providers, the chat agent, three-pass answers, the review panel."""
