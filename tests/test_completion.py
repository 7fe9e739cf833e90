"""Tab completion: Hydra's install scripts for the program `cvrun`, and its answers for the command typed."""

import os
import subprocess
import sys

import pytest

from cvrun.cli import COMMANDS
from cvrun.overrides import group_options
from tests.conftest import REPO, cli


@pytest.mark.parametrize("shell, registers", [("bash", "-F hydra_bash_completion cvrun"),
                                              ("zsh", "-F hydra_bash_completion cvrun"),
                                              ("fish", "complete -c cvrun -x -a '(hydra_fish_completion)'")])
def test_the_install_script_completes_the_program_cvrun(shell, registers, tmp_path):
    assert 'eval "$(cvrun -sc install=bash)"' in cli("--help", cwd=tmp_path).stdout
    for args in (["train", "-sc", f"install={shell}"], [f"--shell-completion=install={shell}"]):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert registers in result.stdout and "query=" in result.stdout


def query(line: str, tmp_path, shell: str = "bash") -> list[str]:
    """What the installed function gets back for the line typed: it runs `cvrun -sc query=SHELL`."""
    previous = os.environ.get("COMP_LINE")
    os.environ["COMP_LINE"] = line
    try:
        result = cli("-sc", f"query={shell}", cwd=tmp_path)
    finally:
        os.environ.pop("COMP_LINE")
        if previous is not None:
            os.environ["COMP_LINE"] = previous
    assert result.returncode == 0 and not result.stderr, result.stderr
    return result.stdout.split("\n" if shell == "fish" else None)


def test_a_query_completes_commands_groups_options_and_keys(tmp_path):
    assert query("cvrun tr", tmp_path) == ["train"]
    assert query("cvrun ", tmp_path) == list(COMMANDS)
    assert "model=" in query("cvrun train mod", tmp_path)
    options = query("cvrun train model=", tmp_path)
    assert options == [f"model={name}" for name in group_options("model")] and "model=lenet5" in options
    assert query("cvrun train regime=fix", tmp_path) == ["regime=fixmatch"]  # not the schema stored beside it
    assert query("cvrun train trainer.epo", tmp_path) == ["trainer.epochs="]
    assert query("cvrun train regime=fixmatch regime.thresh", tmp_path) == ["regime.threshold=",
                                                                             "regime.threshold_mode="]
    assert "model=lenet5" in query("cvrun info dataset=shapes model=len", tmp_path, "fish")
    user_configs = REPO / "tests" / "user_configs"
    assert query(f"cvrun train --config-dir {user_configs} model=lenet5_", tmp_path) == ["model=lenet5_dropout"]
    assert query("cvrun summarize ", tmp_path) == []  # no Hydra app: the shell completes file names


def test_the_installed_bash_function_completes_a_line(tmp_path):
    """The round trip a Tab makes: bash runs the installed function, which asks `cvrun` on the PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cvrun").write_text(f'#!/bin/sh\nexec {sys.executable} -m cvrun "$@"\n')
    (bin_dir / "cvrun").chmod(0o755)
    script = ('eval "$(cvrun -sc install=bash)"; COMP_LINE="cvrun train sched=cos"; COMP_WORDS=($COMP_LINE); '
              'COMP_CWORD=2; COMP_POINT=${#COMP_LINE}; hydra_bash_completion; echo "${COMPREPLY[@]}"')
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"sched={name}" for name in group_options("sched") if name.startswith("cos")]


def test_a_query_imports_no_torch():
    code = ("import os, sys; from cvrun.cli import main; os.environ['COMP_LINE'] = 'cvrun train trainer.epo'; "
            "assert main(['-sc', 'query=bash']) == 0; assert 'torch' not in sys.modules, 'a Tab waits for torch'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.split() == ["trainer.epochs="], result.stderr


def test_a_completion_request_of_another_shell_is_one_line(tmp_path):
    result = cli("train", "-sc", "install=tcsh", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "cvrun: error: -sc install=tcsh: write -sc ACTION=SHELL with ACTION one of install, uninstall, query and "
        "SHELL one of bash, zsh, fish, e.g. eval \"$(cvrun -sc install=bash)\""]
