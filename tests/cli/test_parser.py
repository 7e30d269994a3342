import logging
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import transformers

from hf_magma.cli import parser
from hf_magma.cli.parser import (
    REFUSAL_EXIT_STATUS,
    SHOW_TRACEBACK,
    MAGMAArgumentParser,
    run_program,
    setup_logging,
)
from hf_magma.data.arguments import ImageDataArguments
from tests.helpers import ROOT


def test_setup_logging_sets_the_script_library_and_ecosystem_levels():
    saved = (datasets.utils.logging.get_verbosity(), transformers.utils.logging.get_verbosity())
    try:
        setup_logging("some_script", logging.WARNING)
        assert logging.getLogger("some_script").level == logging.WARNING
        assert logging.getLogger("hf_magma").level == logging.WARNING
        assert datasets.utils.logging.get_verbosity() == logging.WARNING
        assert transformers.utils.logging.get_verbosity() == logging.WARNING
    finally:
        datasets.utils.logging.set_verbosity(saved[0])
        transformers.utils.logging.set_verbosity(saved[1])
        for name in ("some_script", "hf_magma"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def _refuse_a_missing_config() -> None:
    MAGMAArgumentParser([ImageDataArguments]).parse_args_and_config(["--config", "no/such/file.yaml"])


def test_a_refusal_is_one_error_line_and_exit_status_2(capsys, monkeypatch):
    monkeypatch.delenv("HF_MAGMA_DEBUG", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setattr(sys, "argv", ["prog"])
    with pytest.raises(SystemExit) as exit_info:
        run_program(_refuse_a_missing_config)
    assert exit_info.value.code == REFUSAL_EXIT_STATUS == 2
    assert capsys.readouterr().err == "error: --config file no/such/file.yaml does not exist\n"


def test_a_refusal_on_another_process_names_the_process(capsys, monkeypatch):
    # Under a launcher, the other processes wait (so that the main process, meeting the same refusal, says it once and
    # the launcher stops them); a refusal of their own is still said.
    monkeypatch.delenv("HF_MAGMA_DEBUG", raising=False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(sys, "argv", ["prog"])
    monkeypatch.setattr(parser, "OTHER_PROCESS_WAIT_S", 0.0)
    with pytest.raises(SystemExit) as exit_info:
        run_program(_refuse_a_missing_config)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error (process 1): --config file no/such/file.yaml does not exist\n"


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_show_traceback_or_hf_magma_debug_keeps_the_exception(monkeypatch, how):
    monkeypatch.delenv("HF_MAGMA_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["prog", SHOW_TRACEBACK] if how == "flag" else ["prog"])
    if how == "environment":
        monkeypatch.setenv("HF_MAGMA_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_program(_refuse_a_missing_config)


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    # A ValueError raised outside hf-magma's own code (here: int() in this test) is no refusal.
    monkeypatch.delenv("HF_MAGMA_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["prog"])
    with pytest.raises(ValueError, match="invalid literal"):
        run_program(lambda: int("not a number"))
    with pytest.raises(KeyError):
        run_program(lambda: {}["missing"])


def test_show_traceback_is_not_an_option_of_the_dataclasses():
    (data,) = MAGMAArgumentParser([ImageDataArguments]).parse_args_and_config([SHOW_TRACEBACK])
    assert isinstance(data, ImageDataArguments)


@pytest.mark.parametrize("script", ["run_mae_magma.py", "run_ssl_magma.py", "run_eval.py", "reproduce.py",
                                    "visualize.py"])
def test_every_program_refuses_in_one_line(tmp_path, script):
    config = tmp_path / "recipe.yaml"
    config.write_text("no_such_option: 1\n")
    env = {key: value for key, value in os.environ.items() if key not in ("HF_MAGMA_DEBUG", "RANK")}
    env["PYTHONPATH"] = str(ROOT / "src")
    command = [sys.executable, str(ROOT / "scripts" / script), "--config", str(config)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr == f"error: --config file {config} has unknown options: no_such_option\n"
    if script == "run_mae_magma.py":
        result = subprocess.run(command, env={**env, "HF_MAGMA_DEBUG": "1"}, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr


def test_a_refusal_under_torchrun_is_printed_once(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("a user's file")
    env = {key: value for key, value in os.environ.items() if key != "HF_MAGMA_DEBUG"}
    env.update(PYTHONPATH=str(ROOT / "src"), ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(ROOT / "scripts" / "run_mae_magma.py"),
               "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--use_cpu", "true"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--output_dir" in errors[0] and "is not empty" in errors[0], result.stderr[-3000:]
    # torchrun's own report of the failed processes follows; no traceback from hf-magma's code
    assert "hf_magma" not in "".join(line for line in result.stderr.splitlines() if line.startswith("  File"))
    assert (tmp_path / "out" / "notes.txt").read_text() == "a user's file"
