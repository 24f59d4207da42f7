"""``familiar train fit`` through the real worker process, and ``familiar adapters``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.train import adapters_app, train_app


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAMILIAR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FAMILIAR_CONFIG", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker's torch: see conftest.one_torch_thread
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def test_fit_trains_through_the_worker_and_prints_progress(
    data_dir: Path, tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "adapter-out"
    result = CliRunner().invoke(
        train_app,
        [
            "fit",
            "--base-model",
            str(tiny_model),
            "--data",
            str(chat_data),
            "--out",
            str(out),
            "--steps",
            "6",
            "--seed",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "job 1: training 6 steps" in result.output
    assert "step 6/6  loss " in result.output and "tok/s" in result.output
    assert f"adapter in {out / 'adapter'}" in result.output
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    status = CliRunner().invoke(train_app, ["status"])
    assert status.exit_code == 0 and "job 1  succeeded" in status.output

    registry_root = data_dir / "adapters"
    from agents.training.registry import AdapterRegistry

    AdapterRegistry(registry_root).add("my-style", out / "adapter")
    assert (
        CliRunner().invoke(adapters_app, ["promote", "my-style", "v1"]).output.strip()
        == "my-style v1 promoted"
    )
    listing = CliRunner().invoke(adapters_app, ["list"]).output
    assert "* my-style v1" in listing and "not evaluated" in listing
    assert (
        "now serving the base model"
        in CliRunner().invoke(adapters_app, ["rollback", "my-style"]).output
    )


def test_fit_refuses_bad_input_before_starting_a_worker(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    result = CliRunner().invoke(
        train_app,
        ["fit", "--base-model", str(tmp_path), "--data", str(bad), "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 2 and "bad.jsonl:1: not JSON" in result.output
    hostile = CliRunner().invoke(adapters_app, ["promote", "../etc", "v1"])
    assert hostile.exit_code == 2 and "not a valid archetype name" in hostile.output


def test_status_of_a_pipeline_prints_each_review(data_dir: Path) -> None:
    from agents.training.pipeline import PipelineStore
    from bot.config import load_settings
    from bot.daemon.run import open_database

    db = open_database(load_settings())
    try:
        store = PipelineStore(db)
        pipeline_id = store.create("pirate", "A pirate.")
        review = {
            "outcome": "rejected",
            "mean_score": 4.5,
            "run_id": 3,
            "reviews": [
                {
                    "reviewer": "safety",
                    "score": 4,
                    "approve": False,
                    "summary": "a leaked e-mail",
                    "issues": ["[major] example 3 holds an address"],
                }
            ],
        }
        store.stage(pipeline_id, "inspect", "failed", outputs={"reviews": [review]}, error="x")
        store.set(pipeline_id, state="failed", stage="inspect", error="inspect: rejected")
    finally:
        db.close()
    result = CliRunner().invoke(train_app, ["status", "--pipeline", str(pipeline_id)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "❌ pirate: stage 3/6 inspect (failed)"
    assert "data review: rejected, mean score 4.5/10, review run #3" in lines
    assert "  safety 4 revise: a leaked e-mail" in lines
    assert "    [major] example 3 holds an address" in lines
    missing = CliRunner().invoke(train_app, ["status", "--pipeline", "99"])
    assert missing.exit_code != 0 and "there is no pipeline 99" in missing.output
