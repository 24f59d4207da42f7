"""The Telegram channel: the thin Telegram face of the assistant core (see channel.py)."""
