"""Security properties not covered elsewhere: no unpickling anywhere, no route serving files outside its own
store, a bounded URL store, the exposure warnings printed by `dalle-demo`.

The API key (401) and the app password are tested in test_demo_api.py, the upload limits there (413 on the
API) and in test_bad_input.py (the app's 10 MB), decompression bombs in test_bad_input.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from conftest import DEMO_API_KEY, LiveServer

from demo.api import FileStore

ROOT = Path(__file__).resolve().parent.parent
UNPICKLING = re.compile(
    r"\b(torch\.load|pickle|cPickle|joblib|dill|allow_pickle\s*=\s*True|weights_only\s*=\s*False)\b"
)


def test_no_code_can_unpickle():
    """Weights are safetensors and configs JSON: nothing in the package or the demo loads a pickle."""
    sources = [*(ROOT / "dalle_core").rglob("*.py"), *(ROOT / "demo").rglob("*.py")]
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sources
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if UNPICKLING.search(line)
    ]
    assert len(sources) > 10 and hits == []


def test_the_shipped_checkpoint_is_safetensors_and_json_only(demo_checkpoint: Path):
    suffixes = {path.suffix for path in demo_checkpoint.iterdir()}
    assert suffixes <= {".safetensors", ".json"} and ".safetensors" in suffixes


@pytest.mark.parametrize(
    "path",
    [
        "/v1/files/..%2F..%2F..%2Fetc%2Fpasswd.png",
        "/v1/files/%2e%2e%2f%2e%2e%2fREADME.md%00.png",
        "/v1/files/../../README.md",
        "/v1/files/..%5C..%5CREADME.png",
        "/v1/files/%2Fetc%2Fpasswd.png",
        "/gradio_api/file=/etc/passwd",
        "/gradio_api/file=../../../../etc/passwd",
        "/gradio_api/file=README.md",
        "/gradio_api/file=assets/checkpoint/vae.json",
        "/gradio_api/file=dalle_core/dalle.py",
        "/file=/etc/passwd",
    ],
)
def test_no_route_serves_files_outside_its_store(demo_server: LiveServer, path: str):
    response = httpx.get(
        f"{demo_server.url}{path}", headers={"Authorization": f"Bearer {DEMO_API_KEY}"}
    )
    assert response.status_code in (403, 404), response.status_code
    assert (
        "root:" not in response.text
        and "laptop-dalle" not in response.text
        and "import" not in response.text
    )


def test_the_gradio_file_route_refuses_absolute_paths_of_project_files(demo_server: LiveServer):
    for path in (ROOT / "README.md", ROOT / "assets" / "checkpoint" / "vae.json"):
        assert httpx.get(f"{demo_server.url}/gradio_api/file={path}").status_code == 403


def test_url_store_is_bounded_in_count_and_bytes():
    store = FileStore(max_files=3, max_bytes=100)
    ids = [store.put(bytes([i]) * 10) for i in range(5)]
    assert [store.get(i) is not None for i in ids] == [
        False,
        False,
        True,
        True,
        True,
    ]  # the oldest go first
    big = store.put(b"x" * 90)
    assert (
        store.get(big) == b"x" * 90 and sum(store.get(i) is not None for i in ids) == 1
    )  # 100 bytes at most
    assert store.get(store.put(b"y" * 101)) is None  # larger than the store: not kept at all


def test_url_store_forgets_files_after_their_age():
    store = FileStore(max_age=0.05)
    file_id = store.put(b"png")
    assert store.get(file_id) == b"png"
    time.sleep(0.1)
    assert store.get(file_id) is None


def test_url_store_ids_are_random_and_long():
    store, defaults = FileStore(), FileStore()
    ids = {store.put(b"png") for _ in range(100)}
    assert len(ids) == 100 and all(len(i) >= 24 and re.fullmatch(r"[\w-]+", i) for i in ids)
    assert (defaults.max_files, defaults.max_bytes, defaults.max_age) == (
        512,
        128 * 2**20,
        3600.0,
    )  # as documented


def test_openapi_document_is_public_but_the_routes_are_not(demo_server: LiveServer):
    assert httpx.get(f"{demo_server.url}/v1/openapi.json").status_code == 200
    assert (
        httpx.post(
            f"{demo_server.url}/v1/images/generations", json={"prompt": "a red circle"}
        ).status_code
        == 401
    )


@pytest.mark.parametrize(
    "args, said, unsaid",
    [
        (
            ["--host", "0.0.0.0"],
            ["listening on 0.0.0.0", "protect them with --auth USER:PASS and --api-key KEY"],
            [],
        ),
        (["--share"], ["--share without --auth", "--share without --api-key"], ["listening on"]),
        (
            ["--host", "0.0.0.0", "--auth", "me:pw", "--api-key", "k"],
            ["listening on 0.0.0.0"],
            ["protect them"],
        ),
        (["--host", "127.0.0.1"], [], ["warning"]),
    ],
)
def test_dalle_demo_prints_exposure_warnings(
    args: list[str], said: list[str], unsaid: list[str], tmp_path: Path, capsys
):
    """The warnings come first, before the model loads (here it cannot: there is no checkpoint)."""
    from demo.__main__ import main as dalle_demo

    with pytest.raises(SystemExit):
        dalle_demo([*args, "--checkpoint", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert all(words in err for words in said) and not any(words in err for words in unsaid)
