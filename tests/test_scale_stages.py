"""benchmarks/scale_stages.py at a toy size: every stage runs in its child process and lands in the JSON."""

from __future__ import annotations

import json


def test_scale_stages_toy_catalogue(benchmark_script, tmp_path) -> None:
    script = benchmark_script("scale_stages.py", "genrec_bench_scale_stages")
    out, md = tmp_path / "scale.json", tmp_path / "RESULTS.md"
    md.write_text("# Benchmark results\n\n## Speed\n\nrows\n\n## Not run yet\n\n- nothing\n")
    common = ["--sizes", "150", "--work", str(tmp_path / "work"), "--json", str(out), "--steps", "2",
              "--embed-sample", "8", "--eval-examples", "16", "--stage2-eval-users", "8", "--eval-users", "8"]
    # the first two stages as the script runs them, each in its own child process (its own peak RSS) ...
    assert script.main([*common, "--stages", "build", "prepare"]) == 0
    child = json.loads(out.read_text())["sizes"]["150"]["stages"]["prepare"]
    assert child["ok"] and "in_process" not in child and child["peak_rss_mib"] > 50
    # ... the rest in this process (a child per stage costs ~4 s of imports each): every stage lands in the JSON
    rest = [s for s in script.STAGES if s not in ("build", "prepare")]
    assert script.main([*common, "--stages", *rest, "--in-process", "--render", "--results-md", str(md),
                        "--no-plot", "--clean"]) == 0
    results = json.loads(out.read_text())
    stages = results["sizes"]["150"]["stages"]
    assert set(stages) == set(script.STAGES)
    failed = {name: rec.get("error") for name, rec in stages.items() if not rec["ok"]}
    assert not failed, failed
    for rec in stages.values():
        assert rec["seconds"] >= 0 and rec["peak_rss_mib"] > 50  # a child's own peak RSS
    assert stages["embed"]["items_per_s"] > 0
    assert stages["evaluate"]["users_per_s_20"] > 0 and stages["evaluate"]["users_per_s_100"] > 0
    assert stages["export"]["folder_mib"] > 0 and stages["stage2_sampled"]["distillation_negatives"] == 1024
    assert stages["stage1_full"]["loss_type"] == "full" and stages["stage1_sampled"]["loss_type"] == "sampled"
    text = md.read_text()
    # the Scale section sits before "Not run yet"; rendering twice replaces it rather than appending
    assert text.index("## Scale") < text.index("## Not run yet") and "| Stage I full softmax: s/step |" in text
    script.main(["--render-only", "--json", str(out), "--results-md", str(md), "--no-plot"])
    assert md.read_text().count("## Scale") == 1
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_dataset_columns_are_read_in_one_conversion(benchmark_script, tmp_path, monkeypatch) -> None:
    """Stage I, Stage II, evaluation and the transition prior read a split's columns with one Arrow conversion:
    iterating a ``datasets`` Column formats it row by row (~50 us a row), minutes at 10^6 items (scale_stages.py)."""
    import numpy as np
    from datasets.arrow_dataset import Column

    from genrec.data_scripts.prepare import load_genrec_dataset, prepare_dataset
    from genrec.tokenization.code_table import CodeTable
    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
    from genrec.trainers.evaluation.evaluator import load_examples
    from genrec.trainers.stages.stage1 import load_stage1_data
    from genrec.trainers.stages.stage2 import encode_split
    from genrec.trainers.stages.transition_prior import fit_transition_prior

    catalogue = benchmark_script("synthetic_catalogue.py", "genrec_bench_synthetic_catalogue")
    catalogue.write_synthetic(tmp_path / "raw", 120)
    data = tmp_path / "data"
    prepare_dataset("s3rec", data, path=tmp_path / "raw")
    sequences, items = load_genrec_dataset(data)
    ids = [str(i) for i in items["item_id"][:]]
    codes = np.stack([np.arange(len(ids)) % 16, np.arange(len(ids)) // 16], axis=1)
    tokenizer = SemanticIDTokenizer.from_code_table(CodeTable.from_codes(ids, codes, codebook_sizes=[16, 16]))
    expected = load_examples(data, "test")

    def row_by_row(self):  # noqa: ANN001, ANN202
        raise AssertionError("a datasets Column was iterated row by row")

    monkeypatch.setattr(Column, "__iter__", row_by_row)
    stage1 = load_stage1_data(data)
    assert len(stage1.splits["train"]) == sum(len(s) >= 2 for s in sequences["train"]["item_ids"][:])
    assert len(encode_split(sequences["train"], "train", tokenizer, max_history=20, source="t").dataset) > 0
    examples = load_examples(data, "test")
    assert examples.histories == expected.histories and examples.user_ids == expected.user_ids

    class Prior:  # records what fit_transition_prior hands the model
        config = type("C", (), {"num_transitions": 0})()

        def set_transition_prior(self, sources, targets, weight, smoothing):  # noqa: ANN001, ANN202
            assert smoothing == 0.0  # the plain prior unless a smoothing is asked for
            self.config.num_transitions = len(sources)

    assert fit_transition_prior(Prior(), tokenizer, data) > 0
