"""LoCoMo turn-level evidence recall through the project's own import and search.

Every turn of each conversation is imported with ``memory.importer`` as a "message" (text
"Speaker: text", plus the caption of a shared photo), each conversation in its own chat scope,
with its session's date as the time and its dialogue id as ``ref``. Each question is then asked
with ``Memory.search_sync`` in that scope (no labels at query time), and recall@k is the share of
its evidence turns among the top k hits' refs, averaged per category and over all questions.

    python bench/memory_locomo.py /work/shared/datasets/locomo10.json [--db /tmp/locomo.db]

Only the bundled model is used. Prints the table and the run time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memory.db import Database  # noqa: E402
from memory.embedder import SentenceTransformerEmbedder  # noqa: E402
from memory.importer import ImportReport, import_records  # noqa: E402
from memory.schema import migrations  # noqa: E402
from memory.service import Memory  # noqa: E402
from memory.settings import MemorySettings  # noqa: E402
from memory.types import Scope  # noqa: E402

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
KS = (1, 5, 10)


def session_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    except ValueError:
        return None


def records(data: list[dict]):
    n = 0
    for chat, item in enumerate(data):
        conv = item["conversation"]
        sessions = sorted(
            (int(m.group(1)), key) for key in conv if (m := re.fullmatch(r"session_(\d+)", key))
        )
        for _number, key in sessions:
            when = session_time(conv.get(f"{key}_date_time", "") or "")
            for turn in conv[key]:
                text = f"{turn['speaker']}: {turn['text']}"
                if turn.get("blip_caption"):
                    text += f" [shares a photo: {turn['blip_caption']}]"
                n += 1
                yield (
                    n,
                    {
                        "text": text,
                        "scope": Scope(chat),
                        "ts": when,
                        "ref": turn["dia_id"],
                        "kind": "message",
                        "role": "user",
                    },
                )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dataset", type=Path)
    ap.add_argument(
        "--db", type=Path, help="reuse/keep the imported store here (default: a temp dir)"
    )
    for name, field in MemorySettings.model_fields.items():
        if field.annotation in (int, float) and name in (
            "dense_weight",
            "neighbour_weight",
            "neighbour2_weight",
            "search_candidates",
            "mmr_lambda",
        ):
            ap.add_argument(f"--{name.replace('_', '-')}", type=field.annotation, default=None)
    args = ap.parse_args()
    overrides = {
        k: v for k, v in vars(args).items() if k in MemorySettings.model_fields and v is not None
    }
    settings = MemorySettings(**overrides)
    started = time.monotonic()
    data = json.loads(args.dataset.read_text())
    workdir = args.db or Path(tempfile.mkdtemp(prefix="locomo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    fresh = not (workdir / "familiar.db").exists()
    db = Database.open(workdir / "familiar.db", [migrations])
    memory = Memory(db, SentenceTransformerEmbedder(), settings, workdir / "index")
    memory.warm_sync()
    loaded = time.monotonic()
    if fresh:
        report = import_records(memory, records(data), ImportReport(), batch_size=256)
        print(
            f"imported {report.imported} turns ({report.skipped} skipped) in {time.monotonic() - loaded:.1f} s"
        )
    imported = time.monotonic()

    found: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    latencies = []
    for chat, item in enumerate(data):
        for qa in item["qa"]:
            evidence = {
                e.strip() for e in qa.get("evidence", []) if re.fullmatch(r"D\d+:\d+", e.strip())
            }
            if not evidence:
                continue
            t = time.monotonic()
            hits = memory.search_sync(qa["question"], Scope(chat), k=max(KS))
            latencies.append(time.monotonic() - t)
            refs = [h.ref for h in hits]
            for k in KS:
                share = len(evidence & set(refs[:k])) / len(evidence)
                found[qa["category"]][k].append(share)
                found[0][k].append(share)
    print(f"settings: {overrides or 'defaults'}")
    print(f"{'category':<14}{'n':>6}" + "".join(f"{'R@' + str(k):>8}" for k in KS))
    for cat in sorted(c for c in found if c):
        row = found[cat]
        print(
            f"{CATEGORIES.get(cat, cat):<14}{len(row[1]):>6}"
            + "".join(f"{sum(row[k]) / len(row[k]):>8.3f}" for k in KS)
        )
    row = found[0]
    print(
        f"{'all':<14}{len(row[1]):>6}" + "".join(f"{sum(row[k]) / len(row[k]):>8.3f}" for k in KS)
    )
    latencies.sort()
    print(
        f"model load {loaded - started:.1f} s, import {imported - loaded:.1f} s, "
        f"{len(latencies)} searches p50 {latencies[len(latencies) // 2] * 1000:.1f} ms "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, total {time.monotonic() - started:.1f} s"
    )
    memory.save_index()
    db.close()


if __name__ == "__main__":
    main()
