"""The adapter pipeline: LoRA training in a child process, the adapter registry, local serving.

Modules: ``data`` (chat JSONL to packed token batches), ``trainer`` (one training run, resumable),
``checkpoint`` (atomic checkpoints), ``jobs`` (the SQLite queue), ``worker`` (the child process),
``runner`` (the daemon side, one job at a time), ``registry`` (adapters on disk),
``local_provider`` (base model + hot-swapped adapters), ``pipeline`` (spec → promote).
Importing this package does not import torch; the modules that need it import it themselves.
"""
