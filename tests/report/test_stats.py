"""cvrun compare's statistics, checked against values computed another way: hand-made runs with known
differences, textbook formulas and published power tables."""

import csv
import io
import math
import random

import numpy as np
import pytest
from scipy import stats

from cvrun.report.compare import FORMATS, Run, compare
from cvrun.report.stats import describe, holm, paired_difference, seeds_to_resolve, welch_difference

T_975 = {4: 2.776445, 9: 2.262157}  # Student's t, 97.5% point, from printed tables


def runs_of(values: dict[str, list[float]], seeds: dict[str, list[int]] | None = None, **extra) -> list[Run]:
    """One completed run per value: aug.name = the setting, trainer.seed = its position (or `seeds`)."""
    runs = []
    for setting, scores in values.items():
        for seed, score in zip((seeds or {}).get(setting, range(len(scores))), scores):
            runs.append(Run(f"{setting}-{seed}", {"aug.name": setting, "trainer.seed": str(seed),
                                                   "dataset.split_seed": "0", **extra.get(setting, {})},
                            {"status": "completed", "test_acc1": score}))
    return runs


def differing():
    """What the compare command passes as the keys that differ between these runs."""
    return ["aug.name", "trainer.seed"]


def by_label(comparison):
    return {s.label: s for s in comparison.settings}


SEED_EFFECT = [50.0, 53.0, 47.0, 56.0, 51.0, 44.0, 58.0, 49.0, 52.0, 46.0]  # what a seed does to both settings


def test_the_mean_interval_is_the_textbook_t_interval():
    values = [71.2, 70.4, 72.9, 69.8, 71.5]
    spread = describe(values)
    half = T_975[4] * np.std(values, ddof=1) / math.sqrt(5)
    assert spread.n == 5 and spread.mean == pytest.approx(np.mean(values))
    assert (spread.low, spread.high) == pytest.approx((np.mean(values) - half, np.mean(values) + half), abs=1e-5)
    assert describe([70.0]).low is None and describe([70.0]).sd is None


def test_a_known_difference_is_covered_and_called_better():
    noise = [0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.4, -0.3, 0.0]
    randaug = [b + 1.3 + e for b, e in zip(SEED_EFFECT, noise)]
    comparison = compare(runs_of({"basic": SEED_EFFECT, "randaug": randaug}), ["aug.name", "trainer.seed"],
                         "test_acc1", baseline="basic")
    d = by_label(comparison)["randaug"].difference
    differences = np.array(randaug) - np.array(SEED_EFFECT)
    half = T_975[9] * differences.std(ddof=1) / math.sqrt(10)
    assert d.test == "paired t" and d.n == 10
    assert (d.mean, d.low, d.high) == pytest.approx((differences.mean(), differences.mean() - half,
                                                     differences.mean() + half), abs=1e-5)
    assert d.low < 1.3 < d.high
    # The seeds' spread (sd 4.3) swamps the 1.3-point gain unpaired; paired, it is resolved.
    assert stats.ttest_ind(randaug, SEED_EFFECT).pvalue > 0.4 and d.p < 1e-6
    assert by_label(comparison)["randaug"].verdict == (f"randaug - basic: +{d.mean:.2f} points [{d.low:.2f}, "
                                                       f"{d.high:.2f}], 10 paired seeds: better")


def test_intervals_cover_the_true_difference_95_times_in_100_and_a_null_difference_is_rarely_called_better():
    rng = np.random.default_rng(0)
    covered, called_better = 0, 0
    trials = 400
    for _ in range(trials):
        seed_effect = rng.normal(60, 3, size=5)
        gained = paired_difference(list(seed_effect + 1.0 + rng.normal(0, 0.8, 5)), list(seed_effect))
        covered += gained.low <= 1.0 <= gained.high
        null = compare(runs_of({"a": list(seed_effect), "b": list(seed_effect + rng.normal(0, 0.8, 5))}),
                       differing(), "test_acc1", baseline="a")
        called_better += by_label(null)["b"].verdict.endswith(": better")
    assert 0.92 <= covered / trials <= 0.98
    assert called_better / trials <= 0.05  # two-sided 5%: about 2.5% of null comparisons fall on this side


def test_a_null_difference_is_not_distinguishable_and_says_how_many_seeds_would_resolve_one_point():
    noise = [0.6, -0.9, 0.2, 0.8, -0.7]
    comparison = compare(runs_of({"basic": SEED_EFFECT[:5], "flip": [b + e for b, e in zip(SEED_EFFECT, noise)]}),
                         differing(), "test_acc1")
    flip = by_label(comparison)["flip"]
    needed = seeds_to_resolve(float(np.std(noise, ddof=1)), 1.0, paired=True)
    assert flip.verdict.endswith(f"5 paired seeds: not distinguishable with 5 seeds: about {needed} seeds would "
                                 "resolve a 1-point difference at this spread") and needed > 5


def test_seeds_to_resolve_matches_published_power_tables():
    # Cohen's tables (G*Power): two-sided alpha 0.05, power 0.8. Paired: dz 1 -> 10, dz 0.5 -> 34;
    # two groups: d 1 -> 17 per group.
    assert seeds_to_resolve(1.0, 1.0, paired=True) == 10
    assert seeds_to_resolve(2.0, 1.0, paired=True) == 34
    assert seeds_to_resolve(1.0, 1.0, paired=False) == 17


def test_holm_by_hand():
    # m = 3: sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])


def test_holms_correction_changes_a_borderline_verdict():
    borderline = [b + 1.2 + e for b, e in zip(SEED_EFFECT, [-1, -0.5, 0, 0.5, 1])]  # paired p 0.027
    unrelated = [b + e for b, e in zip(SEED_EFFECT, [-2, 3, 1, -3, 0.5])]
    alone = compare(runs_of({"basic": SEED_EFFECT[:5], "randaug": borderline}), differing(), "test_acc1")
    assert by_label(alone)["randaug"].verdict.endswith(": better")
    assert by_label(alone)["randaug"].difference.p == pytest.approx(0.0274, abs=1e-4)
    several = compare(runs_of({"basic": SEED_EFFECT[:5], "randaug": borderline, "rotate": unrelated}),
                      differing(), "test_acc1")
    randaug = by_label(several)["randaug"]
    assert randaug.p_holm == pytest.approx(2 * 0.0274, abs=2e-4)
    assert "not distinguishable with 5 seeds" in randaug.verdict
    assert "(p 0.0274, but 0.0549 after Holm's correction for 2 comparisons)" in randaug.verdict


def test_pairs_follow_the_seed_not_the_folder_order_and_a_missing_seed_is_said():
    basic = SEED_EFFECT[:6]
    randaug = [b + 2.0 + e for b, e in zip(basic, [0.1, -0.1, 0.05, 0.0, -0.05, 0.0])]
    runs = runs_of({"basic": basic, "randaug": randaug[:5]})  # randaug has no seed 5
    random.Random(3).shuffle(runs)
    comparison = compare(runs, differing(), "test_acc1")
    d = by_label(comparison)["randaug"].difference
    assert d.n == 5 and d.mean == pytest.approx(2.0) and d.high - d.low < 0.3  # mispaired, the sd would be ~4
    assert "trainer.seed=5 only in basic: left out of the pairs of randaug - basic" in comparison.notes


def test_settings_that_share_no_seeds_fall_back_to_welch_and_say_so():
    a, b = [70.1, 71.3, 69.8, 70.6], [72.0, 73.9, 71.2, 74.4, 72.8]
    disjoint = {"basic": [0, 1, 2, 3], "randaug": [10, 11, 12, 13, 14]}
    comparison = compare(runs_of({"basic": a, "randaug": b}, seeds=disjoint),
                         differing(), "test_acc1")
    d = by_label(comparison)["randaug"].difference
    # Welch by hand: the standard error from each group's own variance, Satterthwaite's degrees of freedom.
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 5
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 4)
    t = (np.mean(b) - np.mean(a)) / math.sqrt(va + vb)
    assert d.test == "Welch" and d.p == pytest.approx(2 * stats.t.sf(t, df), rel=1e-6)
    assert d.low == pytest.approx(np.mean(b) - np.mean(a) - stats.t.ppf(0.975, df) * math.sqrt(va + vb), rel=1e-6)
    assert "randaug and basic share 0 seed(s): compared unpaired (Welch's t-test)" in comparison.notes
    assert "5 and 4 runs, unpaired" in by_label(comparison)["randaug"].verdict
    assert welch_difference(b, a).mean == pytest.approx(d.mean)


def test_lower_is_better_for_losses_and_times():
    slower = [s + 5 + e for s, e in zip(SEED_EFFECT, [0.1, -0.1, 0.2, 0.0, -0.2])]
    runs = [Run(r.name, r.settings, {"status": "completed", "wall_seconds": r.summary["test_acc1"]})
            for r in runs_of({"basic": SEED_EFFECT[:5], "randaug": slower})]
    verdict = by_label(compare(runs, differing(), "wall_seconds"))["randaug"].verdict
    assert verdict.endswith("5 paired seeds: worse") and "points" not in verdict


PUBLISHED = {"published.metric": "test_acc1", "published.source": "Table 2"}


def test_a_published_figure_outside_the_interval_is_flagged():
    near = {**PUBLISHED, "published.value": "71.0"}
    far = {**PUBLISHED, "published.value": "75.0"}
    comparison = compare(runs_of({"ours": [70.4, 71.2, 70.9], "theirs": [70.6, 71.0, 71.5]},
                                 ours=near, theirs=far), differing(), "test_acc1")
    settings = by_label(comparison)
    assert settings["ours"].published["outside"] is False and settings["theirs"].published["outside"] is True
    assert settings["theirs"].published["difference"] == pytest.approx(np.mean([70.6, 71.0, 71.5]) - 75.0)
    text = FORMATS["table"](comparison)
    assert "theirs: published test_acc1 75 (Table 2), measured 71.03 [" in text and "OUTSIDE the interval" in text
    rows = list(csv.DictReader(io.StringIO(FORMATS["csv"](comparison))))
    assert [(r["setting"], r["published"], r["published_outside"]) for r in rows] == \
        [("ours", "71.0", "False"), ("theirs", "75.0", "True")]


def test_markdown_and_latex():
    gained = [s + 1.5 + e for s, e in zip(SEED_EFFECT, [0.3, -0.3, 0.0])]  # differences 1.8, 1.2, 1.5: sd 0.3
    comparison = compare(runs_of({"basic": SEED_EFFECT[:3], "rand_aug": gained}), differing(), "test_acc1")
    t = 4.302653  # Student's t, 2 degrees of freedom, 97.5% point
    half_diff, half_basic, half_gained = (t * sd / math.sqrt(3) for sd in (0.3, 3.0, np.std(gained, ddof=1)))
    markdown = FORMATS["md"](comparison).splitlines()
    assert markdown[2] == ("| setting | n | mean | sd | 95% CI | vs basic | 95% CI (difference) | test | p | p (Holm) "
                           "| verdict |")
    assert markdown[5].startswith(f"| rand_aug | 3 | 51.50 | {np.std(gained, ddof=1):.2f} | [{51.5 - half_gained:.2f}, "
                                  f"{51.5 + half_gained:.2f}] | +1.50 | [{1.5 - half_diff:.2f}, {1.5 + half_diff:.2f}] "
                                  "| paired t |")
    assert markdown[-1] == (f"- rand_aug - basic: +1.50 points [{1.5 - half_diff:.2f}, {1.5 + half_diff:.2f}], "
                            "3 paired seeds: better")
    latex = FORMATS["latex"](comparison).splitlines()
    assert latex[1:5] == [r"\begin{tabular}{lrrrl}", r"\toprule",
                          r"aug.name & $n$ & test\_acc1 & $\Delta$ vs basic & $p$ (Holm) \\", r"\midrule"]
    assert latex[5] == rf"basic & 3 & 50.00 $\pm$ {half_basic:.2f} & -- & -- \\"
    p = by_label(comparison)["rand_aug"].p_holm
    assert latex[6] == (rf"rand\_aug & 3 & \textbf{{51.50 $\pm$ {half_gained:.2f}}} & +1.50 [{1.5 - half_diff:.2f}, "
                        rf"{1.5 + half_diff:.2f}] & {p:.3f} \\")
    assert latex[-2:] == [r"\bottomrule", r"\end{tabular}"]


def test_keys_an_option_decides_name_no_setting_and_keep_no_pair_apart():
    runs = runs_of({"none": SEED_EFFECT[:3], "basic": [s + 1 for s in SEED_EFFECT[:3]]},
                   none={"aug.base": "False"}, basic={"aug.base": "True"})
    keys = ["aug.name", "aug.base", "trainer.seed"]  # aug=none,basic changes both
    plain = compare(runs, keys, "test_acc1")
    assert plain.keys == ["aug.name"] and [s.label for s in plain.settings] == ["basic", "none"]
    chosen = compare(runs, keys, "test_acc1", by="aug.name")
    assert chosen.unit_keys == ["trainer.seed"] and by_label(chosen)["none"].difference.test == "paired t"
    grid = runs_of({"none": SEED_EFFECT[:2] * 2, "basic": SEED_EFFECT[:2] * 2},
                   seeds={"none": [0, 1, 0, 1], "basic": [0, 1, 0, 1]})
    for index, run in enumerate(grid):  # a full grid of aug x lr: neither key decides the other
        run.settings["optim.lr"] = str(0.01 * (1 + index % 2))
    assert compare(grid, ["aug.name", "optim.lr", "trainer.seed"], "test_acc1").keys == ["aug.name", "optim.lr"]


def test_differences_without_spread():
    same = paired_difference([50.1, 60.2, 70.3], [50.1, 60.2, 70.3])
    shifted = paired_difference([50.1 + 0.7, 60.2 + 0.7, 70.3 + 0.7], [50.1, 60.2, 70.3])
    assert (same.p, same.low, same.high) == (1.0, 0.0, 0.0)
    assert shifted.p == 0.0 and shifted.low == pytest.approx(0.7) and shifted.high == pytest.approx(0.7)
    assert welch_difference([60.0, 60.0], [60.0, 60.0]).p == 1.0
    assert welch_difference([61.0, 61.0], [60.0, 60.0]).p == 0.0


def test_runs_without_a_published_figure_show_none_and_note_nothing():
    runs = runs_of({"basic": [70.1, 70.5], "randaug": [71.0, 71.4]},
                   basic={"published.metric": "test_acc1", "published.value": "None", "published.source": ""})
    comparison = compare(runs, differing(), "test_acc1")  # randaug's runs predate the published key
    assert all(s.published is None for s in comparison.settings) and comparison.notes == []
    assert "published" not in FORMATS["table"](comparison)


def test_an_unpaired_null_difference_asks_for_seeds_per_setting():
    a, b = [70.0, 74.0, 66.0], [71.0, 67.0, 73.0]
    comparison = compare(runs_of({"basic": a, "randaug": b}, seeds={"basic": [0, 1, 2], "randaug": [3, 4, 5]}),
                         differing(), "test_acc1")
    spread = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    needed = seeds_to_resolve(spread, 1.0, paired=False)
    assert by_label(comparison)["randaug"].verdict.endswith(
        f"3 and 3 runs, unpaired: not distinguishable with 3 and 3 runs: about {needed} seeds per setting would "
        "resolve a 1-point difference at this spread")
