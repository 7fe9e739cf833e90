"""`cvrun compare DIR...`: run folders read from disk, grouped, paired by seed; trainer.seeds=N sweeps."""

import csv
import io
import json
import random

import pytest
from omegaconf import OmegaConf

from cvrun.commands.seeds import expand_seeds
from tests.conftest import cli, needs_chromium, open_in_chromium

SEED_EFFECT = [50.0, 53.0, 47.0, 56.0, 51.0]


def write_run(folder, config: dict, summary: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(config))
    (folder / "summary.json").write_text(json.dumps(summary))


def fake_sweep(root, gains: dict[str, float], seeds=range(5), extra=None):
    """One run per (aug, seed), in shuffled folder order: the seed moves both settings, the aug adds its gain."""
    jobs = [(aug, seed) for aug in gains for seed in seeds]
    random.Random(0).shuffle(jobs)
    for index, (aug, seed) in enumerate(jobs):
        noise = 0.1 * ((seed * 7 + len(aug)) % 3 - 1)
        write_run(root / f"{index}_aug={aug},trainer.seed={seed}",
                  {"aug": {"name": aug}, "trainer": {"seed": seed, "progress": False}, **(extra or {})},
                  {"status": "completed", "test_acc1": round(SEED_EFFECT[seed] + gains[aug] + noise, 2)})
    return root


def test_a_sweep_is_compared_without_flags(tmp_path):
    root = fake_sweep(tmp_path / "sweep", {"basic": 0.0, "randaug": 1.5, "flip": 0.0})
    write_run(root / "99_failed", {"aug": {"name": "randaug"}, "trainer": {"seed": 9}},
              {"status": "failed", "reason": "diverged"})
    result = cli("compare", str(root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("test_acc1 by aug.name, baseline basic; runs paired by trainer.seed;")
    verdicts = [line for line in lines if " - basic: " in line]
    assert verdicts[0].startswith("flip - basic: ")
    assert "5 paired seeds: not distinguishable with 5 seeds" in verdicts[0]
    assert verdicts[1].startswith("randaug - basic: +1.5") and verdicts[1].endswith("5 paired seeds: better")
    assert "  1 run(s) not completed, left out: " in result.stdout


def test_csv_by_an_option_group_against_a_chosen_baseline(tmp_path):
    root = fake_sweep(tmp_path / "sweep", {"basic": 0.0, "randaug": 1.5})
    result = cli("compare", str(root), "--by", "aug", "--baseline", "randaug", "--format", "csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["setting"]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert rows["randaug"]["verdict"] == "baseline" and rows["basic"]["verdict"] == "worse"
    assert rows["basic"]["pairs"] == "5" and float(rows["basic"]["difference"]) == pytest.approx(-1.5, abs=0.15)


def test_runs_in_several_folders_are_paired_across_them(tmp_path):
    fake_sweep(tmp_path / "old", {"basic": 0.0})
    fake_sweep(tmp_path / "new", {"randaug": 1.5}, seeds=range(4))  # seed 4 missing
    result = cli("compare", str(tmp_path / "old"), str(tmp_path / "new"), "--format", "md", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "- randaug - basic: +1." in result.stdout and "4 paired seeds: better" in result.stdout
    assert "- trainer.seed=4 only in basic: left out of the pairs of randaug - basic" in result.stdout


def test_per_compares_the_settings_at_each_value_of_a_key_apart(tmp_path):
    """A label-efficiency sweep: randaug gains nothing at 4 labels per class and 1.5 points at 25; pooled, the two
    would blur into one verdict."""
    for count, gain in ((4, 0.0), (25, 1.5)):
        fake_sweep(tmp_path / f"labels_{count}", {"basic": 0.0, "randaug": gain},
                   extra={"dataset": {"labeled_per_class": count}})
    folders = [str(tmp_path / "labels_25"), str(tmp_path / "labels_4")]
    result = cli("compare", *folders, "--by", "aug", "--baseline", "basic", "--per", "dataset.labeled_per_class",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("== dataset.labeled_per_class=")[1:]
    assert [block.split("\n")[0] for block in blocks] == ["4", "25"]  # in the key's numeric order
    assert "randaug - basic: +0.0" in blocks[0] and "5 paired seeds: not distinguishable" in blocks[0]
    assert "randaug - basic: +1.5" in blocks[1] and blocks[1].rstrip().endswith("5 paired seeds: better")
    pooled = cli("compare", *folders, "--by", "aug", "--baseline", "basic", cwd=tmp_path)
    assert "--per dataset.labeled_per_class compares the settings at each count apart" in pooled.stdout
    assert "--per" not in result.stdout  # no such note inside a block
    as_md = cli("compare", *folders, "--per", "dataset.labeled_per_class", "--format", "md", cwd=tmp_path)
    assert as_md.returncode == 0 and as_md.stdout.startswith("### dataset.labeled_per_class=4\n"), as_md.stderr
    as_csv = cli("compare", *folders, "--per", "dataset.labeled_per_class", "--format", "csv", cwd=tmp_path)
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(row["dataset.labeled_per_class"], row["setting"], row["verdict"]) for row in table] == [
        ("4", "basic", "baseline"), ("4", "randaug", "not distinguishable"),
        ("25", "basic", "baseline"), ("25", "randaug", "better")]
    for flags, message in ((["--html"], "--html with --per needs --by"),
                           (["--by", "dataset.labeled_per_class"], "--per and --by both name dataset.labeled_per_class")):
        refused = cli("compare", *folders, "--per", "dataset.labeled_per_class", *flags, cwd=tmp_path)
        assert refused.returncode == 2 and message in refused.stderr and refused.stderr.count("\n") == 1


def test_a_preset_s_published_figure_is_set_beside_the_measured_one(tmp_path):
    published = {"published": {"metric": "test_acc1", "value": 60.0, "source": "Table 1"}}
    root = fake_sweep(tmp_path / "sweep", {"basic": 0.0}, extra=published)
    result = cli("compare", str(root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("test_acc1 over 5 runs of one setting (only the seeds differ)")
    assert "all runs: published test_acc1 60 (Table 1), measured 51.4" in result.stdout
    assert result.stdout.rstrip().endswith("OUTSIDE the interval")


def test_trainer_seeds_expands_to_every_setting_s_seeds():
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = expand_seeds(["-m", "model=linear,lenet5", "trainer.seeds=3", "trainer.epochs=1"])
    assert args == ["-m", "model=linear,lenet5", "trainer.seed=0,1,2", "trainer.epochs=1"]
    (jobs,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args[1:]), None)
    assert sorted((job[0], job[1]) for job in jobs) == [(f"model={m}", f"trainer.seed={s}")
                                                        for m in ("lenet5", "linear") for s in range(3)]
    assert expand_seeds(["model=linear"]) == ["model=linear"]


def test_a_seeds_sweep_is_trained_and_compared_with_its_published_figure(tmp_path):
    sweep = tmp_path / "sweep"
    trained = cli("train", "-m", "dataset=shapes", "dataset.train_size=60", "dataset.test_size=30", "model=linear",
                  "trainer.epochs=1", "trainer.progress=false", "trainer.seeds=2", "published.value=30",
                  f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert sorted(p.name for p in sweep.glob("[0-9]_*")) == [
        f"{seed}_dataset.test_size=30,dataset.train_size=60,dataset=shapes,model=linear,published.value=30,"
        f"trainer.epochs=1,trainer.seed={seed}" for seed in (0, 1)]
    result = cli("compare", str(sweep), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("test_acc1 over 2 runs of one setting (only the seeds differ)")
    assert "all runs: published test_acc1 30, measured " in result.stdout


def label_sweep(root):
    """Two regimes' runs at 4, 25 and 400 labels per class, three seeds each: accuracy grows with the labels."""
    for regime, gain in (("scratch", 0.0), ("fixmatch", 8.0)):
        for labels in (4, 25, 400):
            for seed in range(3):
                write_run(root / f"{regime}_{labels}_{seed}",
                          {"regime": {"name": regime}, "dataset": {"labeled_per_class": labels},
                           "trainer": {"seed": seed}},
                          {"status": "completed", "test_acc1": 20 + 10 * len(str(labels)) + gain + seed})
    return root


def test_the_html_page_holds_the_comparison_and_the_label_curve(tmp_path):
    root = label_sweep(tmp_path / "sweep")
    result = cli("compare", str(root), "--by", "regime", "--baseline", "scratch", "--html", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page = root / "compare.html"
    assert result.stdout.rstrip().endswith(str(page))
    text = page.read_text()
    # a pair: one seed at one count of labels
    assert "fixmatch - scratch: +8.00 points [8.00, 8.00], 9 pairs: better" in text
    assert "test_acc1 against labels per class" in text and text.count("data:image/png;base64,") == 1
    assert (root / "compare_labels.png").is_file()


@needs_chromium
def test_the_label_curve_page_loads_in_a_headless_browser(tmp_path):
    root = label_sweep(tmp_path / "sweep")
    assert cli("compare", str(root), "--html", cwd=tmp_path).returncode == 0
    widths, log = open_in_chromium(root / "compare.html", tmp_path)
    assert len(widths) == 1 and widths[0] > 400 and "CONSOLE" not in log, (widths, log)
