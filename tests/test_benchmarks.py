"""Every benchmark of benchmarks/ runs with --quick (tiny sizes, the same code path, no timing asserted), so that
no figure in the README stops being reproducible: each exits 0 and ends with its JSON line, ratio included."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

# benchmark -> the ratio its last line reports against the baseline measured in the same run.
RATIOS = {"augment": "randaug_speedup_32", "data": "data_speedup", "loop": "loop_ratio",
          "predict": "predict_vs_eval", "search": "time_saved", "gpu": "eager_ratio",
          "memory": "rss_vs_decoded"}


def test_every_benchmark_is_here():
    assert sorted(path.stem for path in (REPO / "benchmarks").glob("*.py")) == sorted(RATIOS)


@pytest.mark.parametrize("name", sorted(RATIOS))
def test_benchmark_runs_quick(name, tmp_path):
    # TMPDIR: the scratch folders a benchmark keeps for inspection go to the test's own.
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--quick"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures[RATIOS[name]] > 0, figures
