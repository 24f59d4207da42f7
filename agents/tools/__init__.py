"""Tools the agent can call: built-in families (one module each) and MCP servers, all behind the
one interface in ``base.py``, so the agent loop cannot tell them apart."""
