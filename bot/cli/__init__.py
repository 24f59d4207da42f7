"""The ``familiar`` command line: one module per command group.

``app.py`` holds the ``familiar`` app, the top-level commands (``run``, ``chat``, ``health``,
``config``) and the registration of every group: ``memory.py`` (``familiar memory``),
``backup.py`` (``familiar backup`` and ``restore``), ``train.py`` (``train`` and ``adapters``),
``agents.py`` (``ask`` and ``usage``), ``service.py`` (``familiar service``), ``voice.py``
(``familiar transcribe``). ``common.py`` is what they share. The work itself lives in the other
packages; these modules parse, call and print.
"""

from bot.cli.app import app, main

__all__ = ["app", "main"]
