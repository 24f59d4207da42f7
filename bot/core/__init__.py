"""The channel-agnostic assistant core: what both Telegram and the console talk to.

Nothing in here knows about Telegram types; a channel turns its updates into ``Incoming`` and
``ButtonPress`` values and implements ``Transport`` to show ``Reply`` values.
"""
