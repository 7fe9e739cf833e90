"""README's "Extending cvrun" examples are real: they register, and a run uses all five at once."""

import json
import re
import types

import torch
import yaml

from tests.conftest import REPO, cli


def extending_examples() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Extending cvrun", 1)[1].split("\n## ", 1)[0]
    return "\n\n".join(re.findall(r"```python\n(.*?)```", section, flags=re.S))


def test_the_extending_examples_register_and_train_together(tmp_path):
    plugin = types.ModuleType("readme_plugin")
    exec(compile(extending_examples(), "README.md", "exec"), plugin.__dict__)  # noqa: S102 - README's own code
    result = cli("train", "dataset=shapes", "dataset.train_size=200", "dataset.test_size=50", "trainer.epochs=2",
                 "trainer.progress=false", "model=tiny_cnn", "model.width=8", "optim=rmsprop", "optim.alpha=0.9",
                 "optim.lr=0.001", "aug=invert_some", "aug.share=0.3",
                 "regime=confidence_penalty", "regime.beta=0.2", "logger=[csv,jsonl]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = next((tmp_path / "outputs").glob("*/*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and run.name.endswith("_confidence_penalty_tiny_cnn")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["model"]["width"], saved["optim"]["alpha"]) == (8, 0.9)
    state = torch.load(run / "checkpoints" / "best.pt", map_location="cpu", weights_only=False)
    assert state["model"]["backbone.0.weight"].shape[0] == 8  # the builder got model.width
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2] and (run / "metrics.csv").is_file()
    foreign = cli("train", "regime=confidence_penalty", "regime.k=1", cwd=tmp_path)
    assert foreign.returncode == 2 and "regime=confidence_penalty takes beta" in foreign.stderr
