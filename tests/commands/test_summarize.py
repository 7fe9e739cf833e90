"""`cvrun summarize DIR --html`: the table and every run's learning curves on one page."""

import json

import pytest
from omegaconf import OmegaConf

from cvrun.commands.summarize import curve_groups, differing_settings, find_runs, run_settings
from cvrun.report.sweep_page import curve
from tests.conftest import cli, needs_chromium, open_in_chromium

# (aug, seed) -> validation top-1 per epoch; the training loss is 1 / epoch + seed / 10
VAL = {("none", 0): [40, 50, 60], ("none", 1): [44, 52, 62], ("randaug", 0): [38, 55, 70], ("randaug", 1): [36, 57, 72]}


def fake_sweep(root):
    for index, ((aug, seed), accuracies) in enumerate(VAL.items()):
        run = root / f"{index}_aug={aug},trainer.seed={seed}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(OmegaConf.to_yaml({"aug": {"name": aug}, "trainer": {"seed": seed}}))
        (run / "summary.json").write_text(json.dumps({"status": "completed", "best_val_acc1": max(accuracies),
                                                      "test_acc1": accuracies[-1] - 1, "epochs_run": 3}))
        lines = ["epoch,train_loss,val_acc1"] + [f"{e},{1 / e + seed / 10},{a}" for e, a in enumerate(accuracies, 1)]
        (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    return root


def groups_of(root, seed_means):
    runs = find_runs(root)
    settings = [run_settings(run)[0] for run in runs]
    return curve_groups(runs, settings, differing_settings(settings), seed_means)


def test_one_line_per_run_or_the_mean_and_spread_over_seeds(tmp_path):
    root = fake_sweep(tmp_path / "sweep")
    per_run = groups_of(root, seed_means=False)
    assert sorted(per_run) == ["aug.name=none trainer.seed=0", "aug.name=none trainer.seed=1",
                               "aug.name=randaug trainer.seed=0", "aug.name=randaug trainer.seed=1"]
    per_setting = groups_of(root, seed_means=True)
    assert sorted(per_setting) == ["aug.name=none", "aug.name=randaug"]
    epochs, means, spreads = curve(per_setting["aug.name=randaug"], "val_acc1")
    assert epochs == [1, 2, 3] and means == [37, 56, 71]
    assert spreads == pytest.approx([2 ** 0.5] * 3)  # the sd of two values 2 apart
    assert curve(per_setting["aug.name=none"], "train_loss")[1] == pytest.approx([1.05, 0.55, 1 / 3 + 0.05])


def test_the_page_holds_the_table_and_both_curves(tmp_path):
    root = fake_sweep(tmp_path / "sweep")
    result = cli("summarize", str(root), "--html", "--mean-over-seeds", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page = root / "summary.html"
    assert result.stdout.rstrip().endswith(str(page))
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 2 and "mean and sd over seeds" in text
    assert "<td>randaug</td><td>2</td><td>2</td><td>0 1</td><td>71</td><td>1.41</td>" in text  # mean and sd
    assert (root / "summary_curves" / "val_acc1.png").is_file()


@needs_chromium
def test_the_page_loads_in_a_headless_browser(tmp_path):
    root = fake_sweep(tmp_path / "sweep")
    assert cli("summarize", str(root), "--html", cwd=tmp_path).returncode == 0
    widths, log = open_in_chromium(root / "summary.html", tmp_path)
    assert len(widths) == 2 and all(width > 0 for width in widths) and "CONSOLE" not in log, (widths, log)


def mixed_outputs(root):
    """Runs of a whole outputs/ tree: two learning rates on two copies of a dataset at long paths, each run with
    its own tracker URI, cache folder, progress bar and worker count (settings that change no result)."""
    for index in range(6):
        run = root / f"2026-11-2{index}" / f"10-00-0{index}_scratch_lenet5"
        run.mkdir(parents=True)
        config = {"dataset": {"root": f"/data/shared/{'long_folder_name/' * 4}copy_{index % 2}",
                              "cache_dir": f"/scratch/cache/{index}"},
                  "optim": {"lr": 0.01 * (1 + index % 2)},
                  "trainer": {"progress": bool(index % 3), "num_workers": index},
                  "logger": {"mlflow": {"tracking_uri": f"file:///home/someone/experiments/mlruns/{index}" * 2}}}
        (run / "config.yaml").write_text(OmegaConf.to_yaml(config))
        (run / "summary.json").write_text(json.dumps({"status": "completed", "test_acc1": 50 + index}))
        (run / "metrics.csv").write_text("epoch,train_loss,val_acc1\n1,1.0,40\n2,0.5,50\n")
    return root


def test_legends_name_only_what_changes_results_and_sit_beside_the_plot(tmp_path, monkeypatch):
    from cvrun.report import sweep_page

    root = mixed_outputs(tmp_path / "outputs")
    groups = groups_of(root, seed_means=False)
    assert sorted(groups) == [f"dataset.root=/data/shared/{'long_folder_name/' * 4}copy_{index % 2} "
                              f"optim.lr={0.01 * (1 + index % 2)} (10-00-0{index}_scratch_lenet5)"
                              for index in (0, 2, 4, 1, 3, 5)]
    assert sorted(groups_of(root, seed_means=True)) == sorted(groups)  # no seed to average over
    figures = []
    monkeypatch.setattr(sweep_page, "save_png", lambda figure, path, **savefig: figures.append((figure, savefig)))
    sweep_page.plot_overlaid(groups, "val_acc1", "validation top-1 (%)", tmp_path / "val.png", error_bars=False)
    (figure, savefig), = figures
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    axis = figure.axes[0]
    legend, plot = axis.get_legend().get_window_extent(renderer), axis.get_window_extent(renderer)
    assert legend.x0 >= plot.x1  # beside the plot, not over it
    lines = [line for text in axis.get_legend().get_texts() for line in text.get_text().splitlines()]
    assert max(map(len, lines)) <= sweep_page.LABEL_WIDTH and any(line.endswith("copy_1") for line in lines)
    kept = figure.get_tightbbox(renderer).transformed(figure.dpi_scale_trans)
    assert savefig == {"bbox_inches": "tight"} and kept.contains(*legend.min) and kept.contains(*legend.max)
