"""``familiar memory add|add-file|import|search|stats|reindex|export``: the memory store from the shell.

The lead registers it: ``app.add_typer(memory_app, name="memory")`` (``from bot.cli.memory import
app as memory_app``). Every command opens the database and builds ``Memory`` the same way the
daemon does; the work lives in memory/, this module only parses, reports progress and prints.
``python -m bot.cli.memory`` runs the same commands (used by the kill-during-import test).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from bot.cli.common import friendly as _friendly

INDEX_DIR = "index"

app = typer.Typer(
    help="Add to, import into, search, inspect, reindex and export long-term memory.",
    no_args_is_help=True,
)


@contextmanager
def _memory(*, load_model: bool = True) -> Iterator[Any]:
    """Settings -> database -> Memory, closed (and the index saved) on the way out."""
    from zoneinfo import ZoneInfo

    from bot.config import load_settings
    from bot.daemon.run import open_database
    from memory.embedder import make_embedder
    from memory.service import Memory

    settings = load_settings()
    data_dir = Path(settings.data_dir).expanduser()
    db = open_database(settings)
    memory = Memory(
        db,
        make_embedder(settings.memory.embedding_model, settings.memory.embedding_batch_size),
        settings.memory,
        data_dir / INDEX_DIR,
        tz=ZoneInfo(settings.jobs.timezone),
    )
    try:
        if load_model:
            memory.warm_sync()
        yield memory
        memory.save_index()
    finally:
        db.close()


def _bar(total: int | None, label: str) -> Any:
    return (
        typer.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)
        if total
        else _NoBar()
    )


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


@app.command("add")
@_friendly
def add(
    text: str = typer.Argument(..., help="What to remember."),
    chat: int = typer.Option(
        0, "--chat", help="Chat id (scope) it belongs to: a Telegram chat id."
    ),
    ref: str | None = typer.Option(
        None, "--ref", help="Your reference string, returned with every hit."
    ),
    kind: str = typer.Option("note", "--kind", help="Kind of memory: note, fact, lesson, ..."),
) -> None:
    """Remember one text; prints its id."""
    from memory.types import Scope

    with _memory() as memory:
        item = memory.new(text, Scope(chat), kind, ref=ref)
        typer.echo(memory.add_sync([item])[0])


RECORD_HELP = (
    "JSON Lines, one object per line: text (required), chat_id and user (integers: Telegram "
    "chat and user ids), ts (ISO-8601), ref, kind. A file `familiar memory export` or /export "
    "wrote is read too."
)
SHOWN_ERRORS = 5


@app.command("add-file")
@_friendly
def add_file(
    path: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="PDF, DOCX, XLSX, PPTX, TXT, Markdown or HTML."
    ),
    chat: int = typer.Option(0, "--chat", help="Chat id (scope) it belongs to."),
) -> None:
    """Read a document into memory (chunks of kind 'document'); prints the number of chunks."""
    from memory.ingest import ingest_file_sync
    from memory.types import Scope

    with _memory() as memory:
        result = ingest_file_sync(memory, path, Scope(chat))
    pages = f" from {result.pages} pages" if result.pages else ""
    if result.already:
        typer.echo(f"{result.chunks} chunks{pages} of {result.name} were in memory already")
    else:
        typer.echo(f"{result.chunks} chunks{pages} stored from {result.name}")


@app.command("import")
@_friendly
def import_(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help=RECORD_HELP),
    batch: int = typer.Option(256, "--batch", min=1, help="Rows committed together."),
    pool: int = typer.Option(
        2048,
        "--pool",
        min=1,
        help="Most rows embedded in one call (the encoder pads each batch to its longest text; "
        "a larger pool wastes less).",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Check every line first; import nothing if any line is bad."
    ),
) -> None:
    """Import a JSON Lines file (one object per line); bad lines are reported and skipped.

    Exit 0 when at least one line was imported or already present (run again after an
    interruption, it stores only what is missing; skipped lines are counted, with the first
    reasons, on standard error), 1 when nothing was, and with --strict 1 on any bad line.
    chat_id and user must be integers (Telegram ids).
    """
    from bot.config import load_settings
    from memory.importer import ImportReport, check_records, import_records, read_records

    if strict:
        checked = check_records(file, load_settings().memory.max_text_bytes)
        if checked.skipped:
            _report_skipped(checked)
            typer.echo(
                f"--strict: {checked.skipped} bad {checked.unit}s, nothing imported", err=True
            )
            raise typer.Exit(1)
    report = ImportReport()
    total, records = read_records(file, report)
    with _memory() as memory, _bar(total, "importing") as bar:
        import_records(memory, records, report, batch_size=batch, pool=pool, progress=bar.update)
    present = f", already present {report.present}" if report.present else ""
    typer.echo(f"imported {report.imported}{present}, skipped {report.skipped}")
    _report_skipped(report)
    if report.imported == 0 and report.present == 0:
        typer.echo("error: nothing was imported", err=True)
        raise typer.Exit(1)


def _report_skipped(report: Any) -> None:
    if not report.skipped:
        return
    typer.echo(f"skipped {report.skipped} {report.unit}s; the first reasons:", err=True)
    for error in report.errors[:SHOWN_ERRORS]:
        typer.echo(f"  {error}", err=True)


def _hits_json(hits: list[Any]) -> list[dict[str, Any]]:
    def trim(d: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in d.items() if k != "user_id"}
        for side in ("before", "after"):  # a turn's neighbours, shown with it
            if side in out:
                out[side] = [trim(x) for x in out[side]]
        return out

    return [trim(h.as_dict()) for h in hits]


def _query_line(line: bytes, chat: int, k: int) -> tuple[str, int, int]:
    """One --batch line -> (query, chat id, k); ValueError says what is wrong."""
    try:
        q = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(q, dict) or not isinstance(q.get("query"), str):
        raise ValueError("needs an object with a 'query' string")
    chat_id, limit = q.get("chat_id", chat), q.get("k", k)
    if not isinstance(chat_id, int) or isinstance(chat_id, bool):
        raise ValueError(f"'chat_id' must be an integer (a Telegram chat id), not {chat_id!r}")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
        raise ValueError(f"'k' must be an integer from 1 to 1000, not {limit!r}")
    return q["query"], chat_id, limit


@app.command("search")
@_friendly
def search(
    query: str | None = typer.Argument(None, help="What to look for (omit with --batch)."),
    chat: int = typer.Option(0, "--chat", help="Chat id (scope) to search in: a Telegram chat id."),
    k: int = typer.Option(10, "--k", min=1, max=1000, help="How many hits."),
    as_json: bool = typer.Option(False, "--json", help="Print the hits as a JSON list."),
    batch: Path | None = typer.Option(
        None,
        "--batch",
        exists=True,
        dir_okay=False,
        help=(
            "JSON Lines of queries (query, chat_id an integer Telegram chat id, k); one JSON line "
            "of hits per query, null for a bad line (its error on standard error, exit 1 at the end)."
        ),
    ),
) -> None:
    """Hybrid (full-text + semantic) search within one chat."""
    from memory.types import Scope

    if (query is None) == (batch is None):
        raise typer.BadParameter("give either a QUERY or --batch FILE")
    with _memory() as memory:
        if batch is not None:
            bad = 0
            with batch.open("rb") as lines:
                for n, line in enumerate(lines, start=1):
                    if not line.strip():
                        continue
                    try:
                        text, chat_id, limit = _query_line(line, chat, k)
                    except ValueError as exc:
                        bad += 1
                        typer.echo(f"error: line {n}: {exc}", err=True)
                        typer.echo("null")  # one output line per query line, still
                        continue
                    hits = memory.search_sync(text, Scope(chat_id), k=limit)
                    typer.echo(json.dumps(_hits_json(hits), ensure_ascii=False))
            if bad:
                typer.echo(f"error: {bad} bad query lines", err=True)
                raise typer.Exit(1)
            return
        hits = memory.search_sync(query or "", Scope(chat), k=k)
        if as_json:
            typer.echo(json.dumps(_hits_json(hits), ensure_ascii=False, indent=1))
            return
        if not hits:
            typer.echo("no matches")
        for h in hits:
            ref = f" ref={h.ref}" if h.ref else ""
            typer.echo(f"#{h.id} {h.score:.3f} [{h.kind} {h.ts:%Y-%m-%d}{ref}] {h.text[:200]}")


@app.command("stats")
@_friendly
def stats(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Counts by kind and embedding model, and the vector index's state."""
    with _memory(load_model=False) as memory:
        data = memory.stats_sync()
        manifest = Path(memory.index_dir) / "manifest.json"
        data["saved_index"] = json.loads(manifest.read_text()) if manifest.exists() else None
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    typer.echo(
        f"memories: {data['memories']} in {data['chats']} chats; messages: {data['messages']}; "
        f"superseded facts: {data['superseded']}"
    )
    for kind, n in sorted(data["by_kind"].items()):
        typer.echo(f"  {kind}: {n}")
    for model, n in sorted(data["by_embedding_model"].items()):
        if model == "(none)":  # stored while the model loaded, or to be embedded again
            typer.echo(
                f"  not embedded yet (the next start or `familiar memory reindex` does): {n}"
            )
        else:
            typer.echo(f"  embedded with {model}: {n}")
    saved = data["saved_index"]
    typer.echo(
        f"saved index: {saved['count']} vectors, {saved['kind']}, {saved['model']}/{saved['dim']}"
        if saved
        else "saved index: none"
    )


@app.command("reindex")
@_friendly
def reindex() -> None:
    """Embed rows missing a vector (or with another model's) and rebuild the index from SQLite."""
    import shutil

    from memory import store

    with _memory(load_model=False) as memory:
        shutil.rmtree(memory.index_dir, ignore_errors=True)
        memory.embedder.load()
        pending = len(store.pending_embeddings(memory.db, memory.embedder.model_name, 0, 10**9))
        with _bar(pending, "embedding") as bar:
            done = [0]

            def progress(n: int, _total: int) -> None:
                bar.update(n - done[0])
                done[0] = n

            memory.warm_sync(progress)
        memory.save_index()
        typer.echo(f"index rebuilt: {memory.index.ntotal} vectors ({memory.index.kind})")


@app.command("export")
@_friendly
def export(
    chat: int | None = typer.Option(None, "--chat", help="Only this chat (a Telegram chat id)."),
    user: int | None = typer.Option(None, "--user", help="Only this user (a Telegram user id)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write here instead of standard output."
    ),
) -> None:
    """Export memories and messages (all, one chat's or one user's) as JSON."""
    with _memory(load_model=False) as memory:
        data = memory.export_sync(chat, user)
    text = json.dumps(data, ensure_ascii=False, indent=1)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        typer.echo(
            f"wrote {len(data['memories'])} memories and {len(data['messages'])} messages to {output}",
            err=True,
        )


if __name__ == "__main__":
    app()
