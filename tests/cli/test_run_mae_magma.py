"""End-to-end tests of scripts/run_mae_magma.py on generated image folders (tiny models, a few steps)."""

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file

from hf_magma.records.trainer_state import load_log_history
from tests.helpers import ROOT, kill_worker
from tests.helpers.tiny import tiny_overrides

SCRIPT = ROOT / "scripts" / "run_mae_magma.py"
TINY = tiny_overrides()



@pytest.fixture(scope="module")
def run_mae_magma(load_script):
    return load_script(SCRIPT)


def base_args(train_dir, output_dir, **overrides):
    values = {
        "train_dir": train_dir, "output_dir": output_dir, "config_overrides": TINY, "per_device_train_batch_size": 4,
        "report_to": "none", "disable_tqdm": "true", "logging_steps": 1, "seed": 0, "learning_rate": 1e-3,
        "save_strategy": "steps", "save_steps": 4, "validation_split_percentage": 20,
    }
    values.update(overrides)
    args = []
    for key, value in values.items():
        args += [f"--{key}", str(value)]
    return args


def run_inprocess(run_mae_magma, args):
    return run_mae_magma.main(*run_mae_magma.make_parser().parse_args_and_config(args))


def test_end_to_end_image_folder_schedule_and_outputs(make_image_folder, run_mae_magma, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=10)  # 16 train images: 4 steps per epoch
    out = tmp_path / "out"
    config = tmp_path / "recipe.yaml"
    config.write_text("magma_start_epoch: 1\nmagma_epochs: 1\nmagma_weight: 0.5\nnum_train_epochs: 1\n")
    metrics = run_inprocess(run_mae_magma, ["--config", str(config),
                                            *base_args(tmp_path / "images", out, num_train_epochs=3,
                                                       eval_strategy="epoch")])
    logs = [entry for entry in load_log_history(out) if "loss" in entry]
    assert [entry["step"] for entry in logs] == list(range(1, 13))  # the command line's 3 epochs beat the YAML's 1
    # On for epoch 1 = steps [4, 8); the entry logged after optimizer step s describes step s - 1.
    assert [entry["magma_weight"] for entry in logs] == [0.0] * 4 + [0.5] * 4 + [0.0] * 4
    for entry in logs:
        assert {"reconstruction_loss", "magma_loss", "magma_weight", "uniformity_loss",
                "online_accuracy"} <= set(entry)
    assert "eval_magma_loss" in metrics and "eval_loss" in metrics
    for folder in (out, out / "checkpoint-12"):
        assert (folder / "model.safetensors").is_file() and (folder / "preprocessor_config.json").is_file()
        config_json = json.loads((folder / "config.json").read_text())
        assert config_json["model_type"] == "vit_mae" and config_json["magma_weight"] == 0.5
    card = (out / "README.md").read_text()
    assert "M-MAE" in card
    assert "| augmentation: random resized crop | scale [0.2, 1.0], ratio [0.75, 1.3333]" in card  # MAE's crop


def test_figures_are_written_next_to_the_checkpoint_and_embedded_in_its_card(make_image_folder, run_mae_magma,
                                                                             tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "out"
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=3, magma_start_step=1, magma_steps=1,
                            figures="curves,keys,attention,reconstructions"))
    card = (out / "README.md").read_text()
    for png in ("training_curves.png", "key_pca.png", "attention_maps.png", "reconstructions.png"):
        assert (out / "figures" / png).stat().st_size > 1000
        assert f"figures/{png}" in card
    with pytest.raises(ValueError, match="Unknown figure"):
        run_inprocess(run_mae_magma, base_args(tmp_path / "images", tmp_path / "bad", max_steps=1,
                                               figures="histogram"))


def test_streaming_path(make_image_folder, run_mae_magma, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=8)
    out = tmp_path / "out"
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, streaming="true", max_steps=3, magma_start_step=1,
                            magma_steps=1, save_steps=3, max_eval_samples=4))
    logs = [entry for entry in load_log_history(out) if "loss" in entry]
    assert [entry["magma_weight"] for entry in logs] == [0.0, 1.0, 0.0]
    assert (out / "checkpoint-3" / "model.safetensors").is_file()


def test_streaming_needs_max_steps(make_image_folder, run_mae_magma, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=2)
    with pytest.raises(ValueError, match="--streaming needs --max_steps"):
        run_inprocess(run_mae_magma, base_args(tmp_path / "images", tmp_path / "out", streaming="true"))


def test_corrupt_images_are_skipped(make_image_folder, run_mae_magma, tmp_path, caplog):
    make_image_folder(tmp_path / "images", n_per_class=10, corrupt=3)
    out = tmp_path / "out"
    metrics = run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, num_train_epochs=1,
                                                     magma_start_epoch=0))
    assert metrics["train_skipped_images"] >= 1
    assert "broken_" in caplog.text and "Skipping unreadable image" in caplog.text
    assert (out / "model.safetensors").is_file()


def write_flat_colour_folder(root, n=24):
    """Images of one colour each: augmentation cannot change them, so a run is a function of the seed alone."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        PIL.Image.new("RGB", (16, 16), colour).save(folder / f"{i}.png")


@pytest.mark.parametrize("in_memory", ["false", "true"])
def test_exact_resume_after_sigkill(make_image_folder, tmp_path, monkeypatch, in_memory):
    """Killed (SIGKILL, by itself, at chosen points) in the middle of saving checkpoint-8, then between steps 10 and
    11, then right after the last checkpoint: each run resumes by itself and the result is bit for bit that of an
    uninterrupted run, with each of the 12 optimizer steps done and logged once."""
    if in_memory == "true":
        # Textured images: the crops and flips drawn on the device change the batches, so the resumed run must
        # draw exactly the uninterrupted run's augmentation.
        make_image_folder(tmp_path / "images", n_per_class=12, size=16, modes=("RGB",))
    else:
        write_flat_colour_folder(tmp_path / "images")
    common = dict(max_steps=12, magma_start_step=3, magma_steps=6, save_steps=4, in_memory=in_memory)
    # Every run in its own single-threaded process, forked from a server that imported the libraries once, so that
    # the reference and the resumed runs share the same arithmetic and can be compared bit for bit.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.helpers.kill_worker"])
    logs = iter(range(100))

    def run(output_dir, kill_at="none"):
        log = tmp_path / f"run_{next(logs)}.log"
        process = context.Process(target=kill_worker.run,
                                  args=(kill_at, base_args(tmp_path / "images", output_dir, **common), str(log)))
        process.start()
        process.join(600)
        if process.is_alive():
            process.kill()
            process.join()
        expected = 0 if kill_at == "none" else -signal.SIGKILL
        text = log.read_text()
        assert process.exitcode == expected, (kill_at, process.exitcode, text[-4000:])
        return text

    reference = tmp_path / "reference"
    run(reference)

    killed = tmp_path / "killed"
    run(killed, "save:8")
    assert (killed / "checkpoint-8" / "model.safetensors").is_file()
    assert not (killed / "checkpoint-8" / "trainer_state.json").exists()  # a partial checkpoint
    log = run(killed, "step:10")  # resumes from checkpoint-4, the last complete one
    assert f"Resuming from {killed / 'checkpoint-4'}" in log
    assert (killed / "checkpoint-8" / "trainer_state.json").is_file() and not (killed / "checkpoint-12").exists()
    log = run(killed, "saved:12")
    assert f"Resuming from {killed / 'checkpoint-8'}" in log
    assert not (killed / "model.safetensors").exists()  # really interrupted before the final save
    log = run(killed)  # the last checkpoint is the last step: nothing is trained again
    assert f"Resuming from {killed / 'checkpoint-12'}" in log

    ref_logs = [e for e in load_log_history(reference) if "loss" in e]
    new_logs = [e for e in load_log_history(killed) if "loss" in e]
    assert [e["step"] for e in new_logs] == [e["step"] for e in ref_logs] == list(range(1, 13))
    assert json.loads((killed / "trainer_state.json").read_text())["global_step"] == 12
    for ref, new in zip(ref_logs, new_logs, strict=True):
        # online_accuracy: the probe's state (online_probe.pt) is restored with the checkpoint
        for key in ("loss", "magma_weight", "magma_loss", "reconstruction_loss", "online_accuracy"):
            assert new[key] == ref[key], (ref["step"], key)
    ref_weights, new_weights = load_file(reference / "model.safetensors"), load_file(killed / "model.safetensors")
    for name, tensor in ref_weights.items():
        torch.testing.assert_close(new_weights[name], tensor, rtol=0, atol=0)


def test_two_processes_on_cpu(make_image_folder, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=10)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(SCRIPT),  # --standalone: a free port
               *base_args(tmp_path / "images", out, max_steps=4, magma_start_step=1, magma_steps=2,
                          save_steps=4, magma_gather="true", per_device_train_batch_size=3)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-4"]
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert [entry["magma_weight"] for entry in logs] == [0.0, 1.0, 1.0, 0.0]
    for entry in logs:
        # The Trainer's loss is the mean over processes; the terms must be that same mean to add up to it.
        expected = entry["reconstruction_loss"] + entry["magma_weight"] * entry["magma_loss"]
        assert entry["loss"] == pytest.approx(expected, rel=1e-5)


def test_two_processes_stream_disjoint_shards_that_cover_the_data(make_image_folder, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=10)
    make_image_folder(tmp_path / "validation", n_per_class=2)
    out, record = tmp_path / "out", tmp_path / "record"
    record.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "ACCELERATE_USE_CPU": "1",
           "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "tests.helpers.streaming_worker",
               str(record), *base_args(tmp_path / "images", out, validation_dir=tmp_path / "validation",
                                       streaming="true", max_steps=5, magma_start_step=2, magma_steps=2, save_steps=5,
                                       per_device_train_batch_size=2, online_probe="false")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads((record / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    shards = [record["shard"] for record in records]
    every = sorted(str(path) for path in (tmp_path / "images").rglob("*.png"))
    assert shards[0] and shards[1] and not set(shards[0]) & set(shards[1])  # disjoint
    assert sorted(shards[0] + shards[1]) == every  # together, every example once
    for shard, record in zip(shards, records, strict=True):
        # 5 steps x 2 processes x 2 images: one epoch, in which each process trains on each example of its own shard
        # once and on nothing else (the shards are drawn afresh each epoch). The validation images are collated too.
        trained = [path for path in record["trained"] if str(tmp_path / "images") in path]
        assert sorted(trained) == sorted(shard)
    logs = [entry for entry in load_log_history(out) if "loss" in entry]
    assert [entry["step"] for entry in logs] == [1, 2, 3, 4, 5]  # the schedule counts optimizer steps
    assert [entry["magma_weight"] for entry in logs] == [0.0, 0.0, 1.0, 1.0, 0.0]


# Pretraining recipes: the grids (reproduce_) and fine-tuning recipes (finetune_) belong to other programs.
RECIPES = sorted(r for r in (ROOT / "recipes").rglob("*.yaml") if not r.name.startswith(("reproduce_", "finetune_")))


def test_recipes_use_only_known_options(run_mae_magma):
    parser = run_mae_magma.make_parser()
    for recipe in RECIPES:
        assert parser._read_config(str(recipe)), recipe  # raises on an unknown option
    assert len(RECIPES) == 17


@pytest.mark.parametrize("recipe", ["fashion_mnist_cpu.yaml", "cifar100/mu_mae.yaml", "imagenet100/m_mae.yaml"])
def test_recipes_parse(run_mae_magma, recipe, tmp_path):
    # bf16 needs a GPU; everything else is parsed and validated as on the GPU machine.
    data_args, training_args, model_args = run_mae_magma.make_parser().parse_args_and_config(
        ["--config", str(ROOT / "recipes" / recipe), "--output_dir", str(tmp_path), "--bf16", "false",
         "--use_cpu", "true"]
    )
    assert training_args.output_dir == str(tmp_path)  # the command line wins over the file
    assert training_args.base_learning_rate is not None and model_args.config_overrides
    if recipe != "fashion_mnist_cpu.yaml":
        assert data_args.dataset_name and training_args.num_train_epochs == 400
        assert training_args.magma_start_epoch == 10 and training_args.magma_epochs == 100
    if recipe.endswith("mu_mae.yaml"):
        assert training_args.magma_weight == 1.0 and training_args.uniformity_weight == 0.01


def test_config_file_errors(run_mae_magma, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("not_an_option: 1\n")
    with pytest.raises(ValueError, match="unknown options: not_an_option"):
        run_mae_magma.make_parser().parse_args_and_config(["--config", str(bad)])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_mae_magma.make_parser().parse_args_and_config(["--config", str(tmp_path / "missing.yaml")])


def test_help_lists_the_options():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=120)
    assert result.returncode == 0
    for option in ("--config", "--dataset_name", "--train_dir", "--magma_start_epoch", "--magma_gather",
                   "--base_learning_rate", "--mask_ratio", "--config_overrides", "--online_probe"):
        assert option in result.stdout, option


def test_script_pushes_to_the_hub_with_its_card_and_never_the_token(make_image_folder, run_mae_magma, tmp_path,
                                                                    hub_server):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "out"
    secret = "hf_scriptSecretToken1234567890"
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=4, save_steps=2, magma_start_step=1,
                                           magma_steps=2, push_to_hub="true", hub_model_id="org/m-mae-script",
                                           hub_token=secret))
    files = hub_server.files("org/m-mae-script")
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md"} <= set(files)
    card = files["README.md"].decode()
    assert "M-MAE" in card and "AutoModel.from_pretrained" in card and "2412.02871" in card
    assert json.loads(files["config.json"])["model_type"] == "vit_mae"
    titles = hub_server.commit_titles("org/m-mae-script")
    assert "Training in progress, step 2" in titles  # pushes during training, not only the final one
    for title, name, content in hub_server.all_commit_files("org/m-mae-script"):
        assert secret.encode() not in content, (title, name)
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert not hub_server.unknown_requests


# ---- output folders and resumes --------------------------------------------------------------------------------


def test_a_folder_of_someone_else_is_refused_and_left_untouched(make_image_folder, run_mae_magma, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "mine"
    for name in ("checkpoint-1", "checkpoint-old", "checkpoint-7x"):
        (out / name).mkdir(parents=True)
        (out / name / "notes.txt").write_text(name)
    (out / "README.md").write_text("my notes")
    (out / "config.json").write_text("{}")
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match=r"(?s)--output_dir .*mine is not empty.*new or empty folder"):
        run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=2, save_steps=1,
                                               save_total_limit=1))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert (out / "README.md").read_text() == "my notes" and (out / "config.json").read_text() == "{}"


def test_rotation_deletes_only_checkpoints_this_run_series_wrote(make_image_folder, run_mae_magma, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "out"
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=2, save_steps=1, magma_start_step=0,
                                           magma_steps=2))
    assert (out / "hf_magma_run.json").is_file() and (out / "checkpoint-1" / "hf_magma_run.json").is_file()
    (out / "checkpoint-0").mkdir()  # a folder the user put there, named like a checkpoint
    (out / "checkpoint-0" / "keep.txt").write_text("mine")
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=4, save_steps=1, magma_start_step=0,
                                           magma_steps=2, save_total_limit=1))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-0", "checkpoint-4"]
    assert (out / "checkpoint-0" / "keep.txt").read_text() == "mine"


def test_a_checkpoint_folder_of_someone_else_in_a_run_folder_is_neither_written_into_nor_deleted(
        make_image_folder, run_mae_magma, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "out"
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=2, save_steps=1, magma_start_step=0,
                                           magma_steps=2))
    for name in ("checkpoint-old", "checkpoint-3"):  # the user's, beside the run's checkpoint-1 and checkpoint-2
        (out / name).mkdir()
        (out / name / "notes.txt").write_text(name)
    more = base_args(tmp_path / "images", out, max_steps=4, save_steps=1, magma_start_step=0, magma_steps=2,
                     save_total_limit=1)
    with pytest.raises(FileExistsError, match=r"(?s)holds checkpoint-3, which this run did not write.*Move them out"):
        run_inprocess(run_mae_magma, more)
    assert (out / "checkpoint-3" / "notes.txt").read_text() == "checkpoint-3"
    assert sorted(p.name for p in (out / "checkpoint-3").iterdir()) == ["notes.txt"]
    (out / "checkpoint-3").rename(tmp_path / "moved-away")
    run_inprocess(run_mae_magma, more)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-4",
                                                                                        "checkpoint-old"]
    assert (out / "checkpoint-old" / "notes.txt").read_text() == "checkpoint-old"


def test_a_different_experiment_does_not_continue_an_old_one(make_image_folder, run_mae_magma, tmp_path, caplog):
    make_image_folder(tmp_path / "images", n_per_class=6)
    make_image_folder(tmp_path / "other", n_per_class=5)
    out = tmp_path / "out"
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=4, magma_start_step=0, magma_steps=8))
    with pytest.raises(ValueError, match=r"(?s)Not resuming .*checkpoint-4.*schedule\.magma_weight: 1\.0 -> 0\.0"
                                         r".*new --output_dir.*--ignore_resume_mismatch") as error:
        run_inprocess(run_mae_magma, base_args(tmp_path / "other", out, max_steps=8, magma_start_step=0, magma_steps=8,
                                magma_weight=0))
    assert "data.source" in str(error.value) and "other" in str(error.value)
    # A changed architecture is named too, instead of a shape mismatch while loading the weights.
    bigger = TINY.replace("hidden_size=32,", "hidden_size=64,", 1)
    bigger_args = base_args(tmp_path / "images", out, max_steps=8, magma_start_step=0, magma_steps=8,
                            config_overrides=bigger)
    with pytest.raises(ValueError, match=r"(?s)model\.hidden_size: 32 -> 64.*only if every weight keeps its shape"):
        run_inprocess(run_mae_magma, bigger_args)
    # Continued anyway, the weights cannot load: one clear error, and the folder still describes the weights it
    # holds (nothing is written before the weights have loaded).
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    caplog.clear()
    with pytest.raises(ValueError, match=r"(?s)The weights in .*checkpoint-4 do not fit the present model \(.*"
                                         r"\[32\] -> \[64\].*even with --ignore_resume_mismatch"):
        run_inprocess(run_mae_magma, [*bigger_args, "--ignore_resume_mismatch", "true"])
    assert f"Resuming from {out / 'checkpoint-4'}" in caplog.text
    assert "model.hidden_size: 32 -> 64" in caplog.text and "only if every weight keeps its shape" in caplog.text
    assert json.loads((out / "hf_magma_run.json").read_text())["settings"]["model"]["hidden_size"] == 32
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    # The explicit way out continues it, and says so at the default log level.
    caplog.clear()
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=6, magma_start_step=0, magma_steps=8,
                            magma_weight=0.5, ignore_resume_mismatch="true"))
    assert f"Resuming from {out / 'checkpoint-4'}" in caplog.text
    assert "schedule.magma_weight: 1.0 -> 0.5" in caplog.text
    assert [e["magma_weight"] for e in load_log_history(out) if "loss" in e] == [1.0] * 4 + [0.5] * 2


def test_an_unchanged_command_resumes_and_says_so_at_the_default_log_level(make_image_folder, run_mae_magma, tmp_path,
                                                                           caplog):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "out"
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=2, save_steps=2, magma_start_step=0,
                                           magma_steps=4))
    caplog.clear()
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=3, save_steps=2, magma_start_step=0,
                                           magma_steps=4))
    assert f"Resuming from {out / 'checkpoint-2'}" in caplog.text
    assert [e["step"] for e in load_log_history(out) if "loss" in e] == [1, 2, 3]


def test_yaml_lists_of_reference_layers_are_accepted(run_mae_magma, tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("magma_reference_layers: [0]\nconfig_overrides: " + TINY + "\n")
    model_args = run_mae_magma.make_parser().parse_args_and_config(["--config", str(config), "--output_dir",
                                                                    str(tmp_path / "out")])[2]
    from hf_magma.models.arguments import load_model_and_image_processor

    model, _ = load_model_and_image_processor(model_args)
    assert model.config.magma_reference_layers == [0]
    config.write_text("magma_reference_layers: [0.5]\n")
    with pytest.raises(ValueError, match=r"`magma_reference_layers` must be block indices.*YAML list"):
        run_mae_magma.make_parser().parse_args_and_config(["--config", str(config), "--output_dir", str(tmp_path)])


def test_two_runs_started_at_once_into_one_folder_one_is_refused_naming_the_other(make_image_folder, tmp_path,
                                                                                  monkeypatch):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "out"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.helpers.kill_worker"])
    args = base_args(tmp_path / "images", out, max_steps=8, save_steps=1, save_total_limit=2, magma_start_step=0,
                     magma_steps=8)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = [context.Process(target=kill_worker.run, args=("none", args, str(log))) for log in logs]
    for process in processes:
        process.start()
    for process in processes:
        process.join(600)
    texts = [log.read_text() for log in logs]
    codes = [process.exitcode for process in processes]
    assert sorted(codes) == [0, 1], (codes, texts[0][-3000:], texts[1][-3000:])
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert (f"is in use by another run: PID {processes[winner].pid} on host" in texts[loser]), texts[loser][-3000:]
    assert "Resuming" not in texts[loser] and "Running training" not in texts[loser]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-7", "checkpoint-8"]
    for name in ("checkpoint-7", "checkpoint-8"):
        assert (out / name / "trainer_state.json").is_file() and (out / name / "model.safetensors").is_file()
    assert not (out / "hf_magma_run.lock").exists()
    assert [e["step"] for e in load_log_history(out) if "loss" in e] == list(range(1, 9))


def folder_bytes(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_rerunning_a_finished_run_trains_nothing_and_leaves_every_file_as_it_was(make_image_folder, run_mae_magma,
                                                                                 tmp_path, caplog):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "out"
    args = base_args(tmp_path / "images", out, max_steps=4, save_steps=2, magma_start_step=0, magma_steps=4)
    first = run_inprocess(run_mae_magma, args)
    before = folder_bytes(out)
    assert json.loads(before["train_results.json"])["train_loss"] > 0
    caplog.clear()
    again = run_inprocess(run_mae_magma, args)
    assert f"{out} holds this run, finished at step 4: nothing was trained" in caplog.text
    assert folder_bytes(out) == before
    assert again["train_loss"] == first["train_loss"]


@pytest.mark.parametrize("change, difference", [
    ({"learning_rate": 5e-3}, "training.learning_rate: 0.001 -> 0.005"),
    ({"per_device_train_batch_size": 3}, "training.per_device_train_batch_size: 4 -> 3"),
    ({"magma_gather": "true"}, "training.magma_gather: false -> true"),
    ({"weight_decay": 0.05}, "training.weight_decay: 0.0 -> 0.05"),
    ({"lr_scheduler_type": "cosine"}, 'training.lr_scheduler_type: "constant" -> "cosine"'),
])
def test_a_resume_that_changes_what_is_trained_is_refused_with_the_differences(make_image_folder, run_mae_magma,
                                                                               tmp_path, change, difference):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "out"
    common = dict(save_steps=2, magma_start_step=0, magma_steps=8, lr_scheduler_type="constant")
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=2, **common))
    before = folder_bytes(out)
    with pytest.raises(ValueError, match=r"(?s)Not resuming .*checkpoint-2.*" + re.escape(difference)):
        run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=4, **{**common, **change}))
    assert folder_bytes(out) == before


def test_a_changed_learning_rate_continued_anyway_keeps_the_checkpoints_and_records_it(make_image_folder,
                                                                                       run_mae_magma, tmp_path,
                                                                                       caplog):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "out"
    common = dict(save_steps=2, magma_start_step=0, magma_steps=8, lr_scheduler_type="constant")
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=2, learning_rate=1e-4, **common))
    caplog.clear()
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=4, learning_rate=5e-3,
                                           ignore_resume_mismatch="true", **common))
    assert "training.learning_rate: 0.0001 -> 0.005" in caplog.text
    assert "Kept from" in caplog.text and "learning_rate 0.0001" in caplog.text
    # What was trained: the optimizer state's rate, and that is what the records say.
    assert [e["learning_rate"] for e in load_log_history(out) if "loss" in e] == [1e-4] * 4
    assert torch.load(out / "training_args.bin", weights_only=False).learning_rate == 1e-4
    assert json.loads((out / "hf_magma_run.json").read_text())["settings"]["training"]["learning_rate"] == 1e-4
    card = (out / "README.md").read_text()
    assert "0.0001" in card and "0.005" not in card


def test_partial_checkpoints_are_named_never_counted_and_rotated_when_they_are_the_runs(make_image_folder,
                                                                                      run_mae_magma, tmp_path,
                                                                                      caplog):
    make_image_folder(tmp_path / "images", n_per_class=6)
    out = tmp_path / "out"
    common = dict(save_steps=2, magma_start_step=0, magma_steps=8)
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=2, **common))
    marker = (out / "checkpoint-2" / "hf_magma_run.json").read_text()
    for step in (3, 5):  # left by saves of this run series cut short: no whole trainer_state.json
        (out / f"checkpoint-{step}").mkdir()
        (out / f"checkpoint-{step}" / "hf_magma_run.json").write_text(marker)
    (out / "checkpoint-5" / "trainer_state.json").write_text('{"global_st')  # truncated, in the newest
    caplog.clear()
    run_inprocess(run_mae_magma, base_args(tmp_path / "images", out, max_steps=4, save_total_limit=2, **common))
    assert "never resumed: checkpoint-3, checkpoint-5" in caplog.text
    assert f"Resuming from {out / 'checkpoint-2'}" in caplog.text
    # Two complete checkpoints kept; the partial ones never counted against the limit, and removed.
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-2", "checkpoint-4"]
