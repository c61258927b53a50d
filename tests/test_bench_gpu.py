"""bench/bench_gpu.py's records (issue 11 item 3): the schema is enforced and the table
shows each aihf figure beside its peer's from the same card, date and model."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_gpu  # noqa: E402


def _record(**changes):
    record = {"card": "NVIDIA H200", "date": "2026-12-03", "model": "pythia-1b", "what": "train-step", "impl": "trl",
              "tokens_per_s": 40000.0, "peak_gib": 28.0, "batch": 8, "seq_len": 190.0, "options": []}
    return {**record, **changes}


def test_records_outside_the_schema_are_refused():
    assert bench_gpu.check_record(_record()) == _record()
    for bad, message in ((_record(impl="hf-static"), "not one of"), (_record(what="eval"), "not one of"),
                         (_record(tokens_per_s=0.0), "positive"), ({**_record(), "extra": 1}, "keys")):
        with pytest.raises(ValueError, match=message):
            bench_gpu.check_record(bad)


def test_the_table_gives_aihf_its_ratio_to_the_peer_of_the_same_run(tmp_path):
    import json

    records = [_record(), _record(impl="trl-precompute", tokens_per_s=50000.0),
               _record(impl="aihf:dpo", tokens_per_s=60000.0, options=["model.padding_free"]),
               _record(what="generate", impl="hf-static", tokens_per_s=10000.0),
               _record(what="generate", impl="aihf:generate", tokens_per_s=25000.0),
               _record(date="2026-11-01", impl="aihf:dpo", tokens_per_s=1.0)]  # another run: no peer
    table = bench_gpu.render_table(records)
    assert "| aihf:dpo | 60,000 | 1.50x | 1.20x |" in table and "| aihf:generate | 25,000 | 2.50x |  |" in table
    assert "| trl-precompute | 50,000 |  |  |" in table
    assert "| 2026-11-01 | pythia-1b | train-step | aihf:dpo | 1 |  |  |" in table
    (tmp_path / "gpu.json").write_text(json.dumps(records))
    markdown = tmp_path / "benchmarks.md"
    markdown.write_text(f"before\n{bench_gpu.MARKERS[0]}\nold table\n{bench_gpu.MARKERS[1]}\nafter\n")
    bench_gpu.render(tmp_path / "gpu.json", markdown)
    text = markdown.read_text()
    assert "old table" not in text and table in text and text.startswith("before\n") and text.endswith("after\n")


def test_bf16_weight_rows_are_compared_with_trl_under_bf16_weights_and_keep_the_float32_rows():
    bf16 = ["weights=bfloat16"]
    records = [_record(), _record(impl="aihf:dpo", tokens_per_s=60000.0),
               _record(options=bf16, tokens_per_s=50000.0), _record(impl="aihf:dpo", tokens_per_s=80000.0, options=bf16)]
    table = bench_gpu.render_table(records)
    assert "| aihf:dpo | 60,000 | 1.50x |" in table and "| aihf:dpo | 80,000 | 1.60x |" in table
    assert not bench_gpu.same_measurement(records[0], records[2])  # a bf16-weights run keeps the float32 rows
    assert bench_gpu.same_measurement(records[2], {**records[2], "tokens_per_s": 1.0})  # a rerun replaces


def test_rows_measured_with_another_attention_kernel_are_compared_with_trl_under_the_same_kernel():
    flex = ["attn=flex_attention"]
    records = [_record(), _record(options=flex, tokens_per_s=20000.0),
               _record(impl="aihf:dpo", tokens_per_s=60000.0, options=["model.padding_free", *flex])]
    assert "| aihf:dpo | 60,000 | 3.00x |" in bench_gpu.render_table(records)


@pytest.mark.e2e
def test_the_dpo_step_benchmark_runs_its_aihf_contenders(tmp_path):
    """bench/bench_dpo_step.py, which the GPU script runs first, still drives the training loop: each
    aihf contender (padded, packed, chunked; AIHF-DPO) takes its steps on a tiny model on the CPU
    and reports its tokens (the benchmark wraps ``method.logps``, so a change of its signature shows here)."""
    import json
    import subprocess

    out = tmp_path / "step.json"
    subprocess.run([sys.executable, str(Path(bench_gpu.__file__).with_name("bench_dpo_step.py")),
                    "--contenders", "aihf-dpo-packed,aihf-aihf-dpo-chunked", "--pairs", "2", "--hidden", "32",
                    "--layers", "1", "--steps", "1", "--warmup", "1", "--repeats", "1", "--json", str(out)],
                   check=True, capture_output=True, text=True, timeout=600)
    rows = json.loads(out.read_text())["rows"]
    assert [row["contender"] for row in rows] == ["aihf-dpo-packed", "aihf-aihf-dpo-chunked"]
    assert all(row["tokens_per_step"] > 0 for row in rows)
