"""`cvrun compare`'s tables: runs grouped into settings, paired by seed, each setting against a baseline.

A setting is a combination of the keys that differ between the runs, leaving out the seeds (trainer.seed,
dataset.split_seed), the published figure and the keys that change no result (loggers, progress bars,
caches); `by` names the one key to group by instead, and the runs are then paired on every other key that
differs, seeds included. Only completed runs count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cvrun.errors import UserError
from cvrun.report.curves import LABELS_KEY
from cvrun.report.stats import ALPHA, Difference, Spread, describe, holm, paired_difference, seeds_to_resolve, \
    welch_difference
from cvrun.report.table import changes_no_result, to_text
from cvrun.report.table import to_csv as csv_table
from cvrun.report.table import to_markdown as markdown_table

SEED_KEYS = ("trainer.seed", "dataset.split_seed")
PUBLISHED = "published"
LOWER_IS_BETTER = ("loss", "seconds", "error", "ece")  # metric names ending so: a fall is the improvement


@dataclass
class Run:
    """One run folder's flat config (strings, as summarize reads them) and its summary.json."""

    name: str
    settings: dict[str, str]
    summary: dict[str, Any]


@dataclass
class Setting:
    label: str
    values: dict[tuple, float]  # pairing unit (the seeds; with `by`, other keys too) -> the metric
    spread: Spread
    duplicated: bool = False  # two runs share a unit: the setting cannot pair
    difference: Difference | None = None
    p_holm: float | None = None
    outcome: str = "baseline"  # better, worse, not distinguishable, not tested
    verdict: str = ""  # the outcome in a sentence
    published: dict[str, Any] | None = None


@dataclass
class Comparison:
    metric: str
    keys: list[str]  # what the settings are made of
    unit_keys: list[str]  # what pairs runs across settings
    baseline: str
    settings: list[Setting]
    resolve: float
    notes: list[str] = field(default_factory=list)


def ordered(value: str) -> tuple:
    """Numbers by value (4 before 25 before 400), then text."""
    try:
        return 0, float(value), ""
    except ValueError:
        return 1, 0.0, value


def grouping_keys(differing: list[str], by: str | None) -> tuple[list[str], list[str]]:
    """(the keys a setting is made of, the keys that pair runs across settings)."""
    counted = [k for k in differing if not changes_no_result(k) and k.split(".")[0] != PUBLISHED]
    seeds = [k for k in SEED_KEYS if k in counted]
    if by is not None:
        return [by], [k for k in dict.fromkeys((*seeds, *counted)) if k != by]
    return [k for k in counted if k not in SEED_KEYS], seeds


def label_of(settings: dict[str, str], keys: list[str]) -> str:
    if len(keys) == 1:
        return str(settings.get(keys[0]))
    return " ".join(f"{k}={settings.get(k)}" for k in keys) or "all runs"


def unit_label(unit: tuple, unit_keys: list[str]) -> str:
    return " ".join(f"{k}={v}" for k, v in zip(unit_keys, unit) if v is not None)


def numeric(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compare(runs: list[Run], differing: list[str], metric: str, by: str | None = None,
            baseline: str | None = None, resolve: float = 1.0) -> Comparison:
    """Group, pair and test; `differing` are the config keys whose values differ between the runs."""
    keys, unit_keys = grouping_keys(differing, by)
    completed = [r for r in runs if r.summary.get("status") == "completed"]
    notes = [f"{len(runs) - len(completed)} run(s) not completed, left out: "
             + ", ".join(sorted(r.name for r in runs if r not in completed))] if len(completed) < len(runs) else []
    scored = [r for r in completed if numeric(r.summary.get(metric)) is not None]
    if not scored:
        found = sorted({k for r in completed for k, v in r.summary.items() if numeric(v) is not None})
        raise UserError(f"--metric {metric}: no completed run has it in summary.json; numeric results: "
                        f"{', '.join(found) or 'none'}")
    if len(scored) < len(completed):
        notes.append(f"{len(completed) - len(scored)} completed run(s) without {metric}, left out")
    if by is None:
        keys = essential_keys(keys, scored)
    else:  # a key that follows the setting (aug.base with --by aug.name) would keep every pair apart
        unit_keys = [k for k in unit_keys if len({(r.settings.get(by), r.settings.get(k)) for r in scored})
                     > len({r.settings.get(by) for r in scored})]
    if LABELS_KEY in keys + unit_keys and any(k != LABELS_KEY for k in keys):
        notes.append(f"the runs differ in {LABELS_KEY} as well; --per {LABELS_KEY} compares the settings at each "
                     "count apart")
    groups: dict[str, list[Run]] = {}
    for run in sorted(scored, key=lambda r: [ordered(str(r.settings.get(k))) for k in keys]):
        groups.setdefault(label_of(run.settings, keys), []).append(run)
    settings = [make_setting(label, members, unit_keys, metric, notes) for label, members in groups.items()]
    chosen = baseline if baseline is not None else settings[0].label
    if chosen not in groups:
        raise UserError(f"--baseline {baseline} names no setting; settings ({' '.join(keys) or 'one'}): "
                        f"{', '.join(groups)}")
    comparison = Comparison(metric, keys, unit_keys, chosen, settings, resolve, notes)
    test_against_baseline(comparison)
    return comparison


def essential_keys(keys: list[str], runs: list[Run]) -> list[str]:
    """The keys without those the others decide: aug=none,basic changes aug.name and aug.base together, and the
    settings are named by aug.name alone. An option's name (`X.name`) is kept before its own keys."""
    def partition(chosen: list[str]) -> set[tuple]:
        groups: dict[tuple, list[int]] = {}
        for index, run in enumerate(runs):
            groups.setdefault(tuple(run.settings.get(k) for k in chosen), []).append(index)
        return {tuple(members) for members in groups.values()}

    kept = list(keys)
    whole = partition(kept)
    for key in sorted(keys, key=lambda k: k.endswith(".name")):
        rest = [k for k in kept if k != key]
        if rest and partition(rest) == whole:
            kept = rest
    return kept


def make_setting(label: str, members: list[Run], unit_keys: list[str], metric: str, notes: list[str]) -> Setting:
    values: dict[tuple, float] = {}
    duplicated = False
    for run in members:
        unit = tuple(run.settings.get(k) for k in unit_keys)
        duplicated |= unit in values
        values[unit] = float(run.summary[metric])
    scores = [float(run.summary[metric]) for run in members]
    if duplicated:
        shared = f"share {' '.join(unit_keys)}" if unit_keys else "differ in no seed"
        notes.append(f"{label}: several runs {shared}; compared unpaired (Welch's t-test)")
    setting = Setting(label, values, describe(scores), duplicated)
    setting.published = published_figure(label, members, notes)
    if duplicated:
        setting.values = {(i,): score for i, score in enumerate(scores)}
    return setting


def test_against_baseline(comparison: Comparison) -> None:
    """Each setting's difference from the baseline, Holm-adjusted p-values and a verdict."""
    base = next(s for s in comparison.settings if s.label == comparison.baseline)
    tested = []
    for setting in comparison.settings:
        if setting is base:
            continue
        setting.difference = difference(setting, base, comparison)
        if setting.difference is not None:
            tested.append(setting)
    for setting, adjusted in zip(tested, holm([s.difference.p for s in tested])):
        setting.p_holm = adjusted
    for setting in comparison.settings:
        if setting is not base:
            setting.outcome, setting.verdict = verdict(setting, base, comparison, len(tested))


def difference(setting: Setting, base: Setting, comparison: Comparison) -> Difference | None:
    """Paired when at least two seeds are shared (the others left out and said); else Welch's test."""
    shared = [u for u in setting.values if u in base.values] if not (setting.duplicated or base.duplicated) else []
    if len(shared) >= 2:
        for name, own, other in ((setting.label, setting, base), (base.label, base, setting)):
            alone = sorted((u for u in own.values if u not in other.values), key=lambda u: [ordered(str(v)) for v in u])
            if alone:
                comparison.notes.append(f"{', '.join(unit_label(u, comparison.unit_keys) for u in alone)} only in "
                                        f"{name}: left out of the pairs of {setting.label} - {base.label}")
        return paired_difference([setting.values[u] for u in shared], [base.values[u] for u in shared])
    if setting.spread.n < 2 or base.spread.n < 2:
        comparison.notes.append(f"{setting.label} - {base.label}: too few runs to test (2 a setting at least)")
        return None
    if not (setting.duplicated or base.duplicated):
        comparison.notes.append(f"{setting.label} and {base.label} share {len(shared)} seed(s): compared unpaired "
                                "(Welch's t-test)")
    return welch_difference(list(setting.values.values()), list(base.values.values()))


def lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER)


def verdict(setting: Setting, base: Setting, comparison: Comparison, tests: int) -> tuple[str, str]:
    """The outcome, and it in a sentence: 'randaug - basic: +1.30 points [0.40, 2.20], 10 paired seeds: better',
    or why it cannot say."""
    d = setting.difference
    head = f"{setting.label} - {base.label}"
    if d is None:
        return "not tested", f"{head}: not tested (too few runs)"
    unit = " points" if is_percentage(comparison.metric) else ""
    paired = d.test == "paired t"
    if not paired:
        have = f"{setting.spread.n} and {base.spread.n} runs"
        noun, amount = "seeds", f"{have}, unpaired"
    elif set(comparison.unit_keys) <= set(SEED_KEYS):
        noun, have, amount = "seeds", f"{d.n} seeds", f"{d.n} paired seeds"
    else:  # with --by, a pair is one seed at one value of the other keys that differ (labels per class)
        noun, have, amount = "pairs", f"{d.n} pairs", f"{d.n} pairs"
    text = f"{head}: {d.mean:+.2f}{unit} [{d.low:.2f}, {d.high:.2f}], {amount}"
    if setting.p_holm < ALPHA:
        outcome = "better" if (d.mean > 0) != lower_is_better(comparison.metric) else "worse"
        return outcome, f"{text}: {outcome}"
    # Holm's first step tests the smallest p-value at alpha / m: what more seeds must clear at least.
    needed = seeds_to_resolve(d.spread, comparison.resolve, paired, ALPHA / max(tests, 1))
    resolve = f"a {comparison.resolve:g}{'-point' if unit else ''} difference at this spread"
    if needed is not None and needed <= d.n:
        text += f": not distinguishable with {have}, enough to resolve {resolve}"
    else:
        size = f"more than 10,000 {noun}" if needed is None else f"about {needed} {noun}"
        text += f": not distinguishable with {have}: {size}{'' if paired else ' per setting'} would resolve {resolve}"
    if d.p < ALPHA:
        text += f" (p {d.p:.3g}, but {setting.p_holm:.3g} after Holm's correction for {tests} comparisons)"
    return "not distinguishable", text


def is_percentage(metric: str) -> bool:
    return "acc" in metric or "f1" in metric


def published_figure(label: str, members: list[Run], notes: list[str]) -> dict[str, Any] | None:
    """The published figure the setting's preset carries, beside the measured mean and interval of its metric;
    `outside` where the published figure falls outside the interval."""
    figures = {tuple(r.settings.get(f"published.{k}") for k in ("metric", "value", "source")) for r in members}
    figures = {figure for figure in figures if figure[1] not in (None, "None")}  # value null: no figure
    if not figures:
        return None
    if len(figures) > 1:
        notes.append(f"{label}: its runs carry different published figures; none shown")
        return None
    metric, value, source = next(iter(figures))
    scores = [float(r.summary[metric]) for r in members if numeric(r.summary.get(metric)) is not None]
    if not scores:
        notes.append(f"{label}: no run has {metric}, the metric of its published figure")
        return None
    spread = describe(scores)
    published = float(value)
    outside = None if spread.low is None else not spread.low <= published <= spread.high
    return {"metric": metric, "published": published, "source": source or "", "measured": spread,
            "difference": spread.mean - published, "outside": outside}


# Formatting: rows of plain values, then the four formats.

def number(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def p_value(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def rows(comparison: Comparison) -> list[dict[str, Any]]:
    """One row per setting, numbers rounded: the CSV's columns."""
    out = []
    for s in comparison.settings:
        d = s.difference
        row = {"setting": s.label, "n": s.spread.n, "mean": round(s.spread.mean, 2),
               "sd": None if s.spread.sd is None else round(s.spread.sd, 2),
               "ci_low": None if s.spread.low is None else round(s.spread.low, 2),
               "ci_high": None if s.spread.high is None else round(s.spread.high, 2),
               "baseline": comparison.baseline,
               "difference": None if d is None else round(d.mean, 2),
               "difference_low": None if d is None else round(d.low, 2),
               "difference_high": None if d is None else round(d.high, 2),
               "pairs": None if d is None or d.test != "paired t" else d.n, "test": None if d is None else d.test,
               "p": None if d is None else float(f"{d.p:.3g}"),
               "p_holm": None if s.p_holm is None else float(f"{s.p_holm:.3g}"),
               "verdict": s.outcome}
        if s.published is not None:
            row.update(published=s.published["published"], published_metric=s.published["metric"],
                       published_source=s.published["source"],
                       published_difference=round(s.published["difference"], 2),
                       published_outside=s.published["outside"])
        out.append(row)
    return out


def display_rows(comparison: Comparison) -> list[dict[str, str]]:
    """The table's cells as text: intervals in brackets."""
    vs = f"vs {comparison.baseline}"
    table = []
    for s in comparison.settings:
        d = s.difference
        interval = "" if s.spread.low is None else f"[{s.spread.low:.2f}, {s.spread.high:.2f}]"
        table.append({"setting": s.label, "n": str(s.spread.n), "mean": number(s.spread.mean),
                      "sd": number(s.spread.sd),
                      "95% CI": interval, vs: "" if d is None else f"{d.mean:+.2f}",
                      "95% CI (difference)": "" if d is None else f"[{d.low:.2f}, {d.high:.2f}]",
                      "test": "" if d is None else d.test, "p": "" if d is None else p_value(d.p),
                      "p (Holm)": p_value(s.p_holm), "verdict": s.outcome})
    return table


def heading(comparison: Comparison) -> str:
    if not comparison.keys:
        return (f"{comparison.metric} over {comparison.settings[0].spread.n} runs of one setting (only the seeds "
                "differ); 95% t interval")
    grouped = " ".join(comparison.keys)
    pairing = f"runs paired by {' and '.join(comparison.unit_keys)}" if comparison.unit_keys else "no seed differs"
    return (f"{comparison.metric} by {grouped}, baseline {comparison.baseline}; {pairing}; "
            f"95% t intervals; p-values of paired t-tests (Welch's where unpaired), Holm-adjusted")


def published_lines(comparison: Comparison) -> list[str]:
    lines = []
    for s in comparison.settings:
        p = s.published
        if p is None:
            continue
        m = p["measured"]
        interval = "no interval with 1 run" if m.low is None else f"[{m.low:.2f}, {m.high:.2f}]"
        where = "" if p["outside"] is None else (": OUTSIDE the interval" if p["outside"] else ": inside the interval")
        source = f" ({p['source']})" if p["source"] else ""
        lines.append(f"{s.label}: published {p['metric']} {p['published']:g}{source}, measured {m.mean:.2f} "
                     f"{interval} over {m.n} run(s), difference {p['difference']:+.2f}{where}")
    return lines


def text_lines(comparison: Comparison) -> list[str]:
    """What follows the table: the verdicts, the published figures and the notes."""
    lines = [s.verdict for s in comparison.settings if s.verdict]
    published = published_lines(comparison)
    if published:
        lines += ["", "published figures:", *(f"  {line}" for line in published)]
    if comparison.notes:
        lines += ["", "notes:", *(f"  {note}" for note in comparison.notes)]
    return lines


def to_table(comparison: Comparison) -> str:
    table = display_rows(comparison)
    lines = [heading(comparison), "", to_text(table, list(table[0])).rstrip(), "", *text_lines(comparison)]
    return "\n".join(lines) + "\n"


def to_markdown(comparison: Comparison) -> str:
    table = display_rows(comparison)
    lines = [l for l in text_lines(comparison) if l.strip() and not l.endswith(":")]
    return "\n".join([f"{heading(comparison)}", "", markdown_table(table, list(table[0])).rstrip(), "",
                      *(f"- {line.strip()}" for line in lines)]) + "\n"


def to_csv(comparison: Comparison) -> str:
    table = rows(comparison)
    return csv_table(table, list(dict.fromkeys(k for row in table for k in row)))


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                 "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def to_latex(comparison: Comparison) -> str:
    """A booktabs table: mean $\\pm$ the 95% interval's half-width, the best mean in bold, the difference from the
    baseline with its interval and the Holm-adjusted p-value."""
    pick = min if lower_is_better(comparison.metric) else max
    best = pick(s.spread.mean for s in comparison.settings)
    lines = [f"% {heading(comparison)}; mean $\\pm$ the 95% interval's half-width, the best in bold",
             r"\begin{tabular}{lrrrl}", r"\toprule",
             rf"{latex_escape(' '.join(comparison.keys) or 'setting')} & $n$ & {latex_escape(comparison.metric)} & "
             rf"$\Delta$ vs {latex_escape(comparison.baseline)} & $p$ (Holm) \\", r"\midrule"]
    for s in comparison.settings:
        half = "" if s.spread.low is None else rf" $\pm$ {(s.spread.high - s.spread.low) / 2:.2f}"
        mean = f"{s.spread.mean:.2f}{half}"
        if s.spread.mean == best and len(comparison.settings) > 1:
            mean = rf"\textbf{{{mean}}}"
        d = s.difference
        delta = "--" if d is None else f"{d.mean:+.2f} [{d.low:.2f}, {d.high:.2f}]"
        lines.append(rf"{latex_escape(s.label)} & {s.spread.n} & {mean} & {delta} & "
                     rf"{p_value(s.p_holm) or '--'} \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


FORMATS = {"table": to_table, "csv": to_csv, "md": to_markdown, "latex": to_latex}
