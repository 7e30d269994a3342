"""The fake Hub itself: the real clients round-trip files through it, and its failure modes behave."""

from __future__ import annotations

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError


def test_upload_download_round_trip(hub_server, tmp_path):
    api = HfApi()
    assert api.create_repo("org/files").repo_id == "org/files"
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.create_repo("org/files")
    assert excinfo.value.response.status_code == 409
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "weights.safetensors").write_bytes(b"\x00" * 1000)
    (tmp_path / "notes.txt").write_text("hello")
    api.upload_folder(repo_id="org/files", folder_path=tmp_path)

    info = api.model_info("org/files")
    assert {s.rfilename for s in info.siblings} == {".gitattributes", "notes.txt", "sub/weights.safetensors"}
    tree = {entry.path for entry in api.list_repo_tree("org/files", recursive=True)}
    assert tree == {".gitattributes", "notes.txt", "sub", "sub/weights.safetensors"}
    assert hub_server.files("org/files")["sub/weights.safetensors"] == b"\x00" * 1000
    path = hf_hub_download("org/files", "sub/weights.safetensors")
    assert open(path, "rb").read() == b"\x00" * 1000
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/files", "missing.txt")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/absent", "notes.txt")
    api.delete_file("notes.txt", "org/files")
    assert "notes.txt" not in api.list_repo_files("org/files")
    assert not hub_server.unknown_requests


def test_injected_errors_and_outage(hub_server):
    api = HfApi()
    hub_server.fail_with(500, "create")
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.create_repo("org/flaky")
    assert excinfo.value.response.status_code == 500
    hub_server.recover()
    hub_server.stop()
    with pytest.raises(httpx2.ConnectError):
        api.create_repo("org/flaky")
    hub_server.start()
    assert api.create_repo("org/flaky").repo_id == "org/flaky"
