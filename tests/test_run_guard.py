"""Which checkpoint folders of an output folder a run refuses to go on beside (`hf_magma.run_guard`)."""

import json

import pytest

from hf_magma.run_guard import RUN_MARKER, check_foreign_checkpoints, write_marker


def test_only_checkpoints_the_run_could_save_into_and_did_not_write_are_refused(tmp_path):
    write_marker(tmp_path / "checkpoint-4", {"series": "ours"})
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    (tmp_path / "checkpoint-2").mkdir()  # before the resumed step: never saved into again
    (tmp_path / "checkpoint-2" / "notes.txt").write_text("mine")
    (tmp_path / "checkpoint-5").mkdir()  # ours, killed before its marker was in place
    (tmp_path / "checkpoint-5" / f"{RUN_MARKER}.123.tmp").write_text("{")
    write_marker(tmp_path / "checkpoint-6", {"series": "ours"})  # ours, partial
    check_foreign_checkpoints(tmp_path, "ours", str(tmp_path / "checkpoint-4"))

    write_marker(tmp_path / "checkpoint-8", {"series": "another run"})
    (tmp_path / "checkpoint-9x").mkdir()
    (tmp_path / "checkpoint-9x" / "notes.txt").write_text("mine")  # not a name the run saves under
    with pytest.raises(FileExistsError, match=r"holds checkpoint-8, which this run did not write"):
        check_foreign_checkpoints(tmp_path, "ours", str(tmp_path / "checkpoint-4"))
    with pytest.raises(FileExistsError, match=r"holds checkpoint-2, checkpoint-8,.*Going on from step 0"):
        check_foreign_checkpoints(tmp_path, "ours", None)
