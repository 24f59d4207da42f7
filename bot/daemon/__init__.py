"""The running daemon, in the order it starts.

1. ``run.py``: the composition root. ``familiar run`` enters here: settings, logging, the
   single-instance lock (``lock.py``), the database and its migrations, then the service graph;
   it tells systemd STATUS, READY, WATCHDOG and STOPPING (``sd_notify.py``).
2. ``services.py``: the service graph, built once in dependency order (memory, model, jobs,
   training via ``training.py``, then the channel last, so nothing answers before what it needs
   is there).
3. ``lifecycle.py``: starts those services in that order and stops them in reverse, bounded.
"""
