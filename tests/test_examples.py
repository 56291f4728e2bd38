"""The examples in examples/: each runs against the fake server, in-process and as a script."""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest

from tupu_async import AsyncTupuClient
from tupu_async.testing import FakeTupuServer
from tupu_async.testing._redis import free_port

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Loopback:
    def __init__(self, server: FakeTupuServer, base_url: str) -> None:
        self.server = server
        self.base_url = base_url
        self.secret_id, self.private_key = server.add_credentials("examples")

    def client(self) -> AsyncTupuClient:
        return AsyncTupuClient(
            self.secret_id,
            self.private_key,
            base_url=self.base_url,
            tupu_public_key=self.server.public_key_pem,
        )


@pytest.fixture(scope="module")
def loopback() -> Iterator[Loopback]:
    server = FakeTupuServer(qps_limit=None)
    with server.serve_in_thread() as base_url:
        yield Loopback(server, base_url)


def upload(name: str, content: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, content, "image/png")}


# --------------------------------------------------------------------------- FastAPI


@pytest.mark.anyio
async def test_fastapi_app_coalesces_concurrent_uploads(loopback: Loopback) -> None:
    example = load_example("fastapi_app")
    app = example.create_app(loopback.client)
    loopback.server.reset_stats()

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        clean = [http.post("/moderate", files=upload(f"{i}.png", PNG)) for i in range(30)]
        responses = await _gather(
            *clean, http.post("/moderate", files=upload("x.png", PNG + b"porn"))
        )
        not_an_image = await http.post("/moderate", files=upload("notes.png", b"hello"))

    assert [r.status_code for r in responses] == [200] * 31
    bodies = [r.json() for r in responses]
    assert [b["name"] for b in bodies[:30]] == [f"{i}.png" for i in range(30)]
    assert bodies[-1]["verdict"] == "block"
    assert not_an_image.status_code == 400
    assert "not an image format" in not_an_image.json()["detail"]
    # 31 uploads, coalesced into shared requests of up to 10 images:
    assert loopback.server.stats.total_requests < 31
    assert max(loopback.server.stats.images_per_request) > 1


async def _gather(*requests: Any) -> list[httpx.Response]:
    import anyio

    responses: list[httpx.Response | None] = [None] * len(requests)

    async def one(i: int) -> None:
        responses[i] = await requests[i]

    async with anyio.create_task_group() as tg:
        for i in range(len(requests)):
            tg.start_soon(one, i)
    return [r for r in responses if r is not None]


# --------------------------------------------------------------------------- aiohttp


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_aiohttp_app_moderates_uploads(loopback: Loopback, anyio_backend: str) -> None:
    import aiohttp
    from aiohttp.test_utils import TestClient, TestServer

    example = load_example("aiohttp_app")
    loopback.server.reset_stats()

    def form(name: str, content: bytes) -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("file", content, filename=name, content_type="image/png")
        return data

    async with TestClient(TestServer(example.create_app(loopback.client))) as http:
        responses = await asyncio.gather(
            *(http.post("/moderate", data=form(f"{i}.png", PNG)) for i in range(20)),
            http.post("/moderate", data=form("sexy.png", PNG + b"sexy")),
        )
        bodies = [await r.json() for r in responses]
        bad = await http.post("/moderate", data=form("bad.png", b"not an image"))
        no_file = await http.post("/moderate", data={"other": "x"})

        assert [r.status for r in responses] == [200] * 21
        assert bad.status == 400
        assert "not an image format" in await bad.text()
        assert no_file.status == 400

    assert [b["name"] for b in bodies[:20]] == [f"{i}.png" for i in range(20)]
    assert bodies[-1]["verdict"] == "review"
    assert loopback.server.stats.total_requests < 21


# --------------------------------------------------------------------------- crawler


@pytest.mark.anyio
async def test_crawler_streams_a_url_file_into_json_lines(
    loopback: Loopback, tmp_path: pathlib.Path
) -> None:
    example = load_example("crawler")
    urls = [f"http://images.test/crawl/{i}.jpg" for i in range(137)]
    urls_file = tmp_path / "urls.txt"
    urls_file.write_text(
        "# crawl list\n" + "\n".join(urls) + "\n\nhttp://x.test/download-fail/a.jpg\n"
    )
    out = tmp_path / "out.jsonl"

    async with loopback.client() as client:
        verdicts = await example.crawl(client, str(urls_file), str(out))

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 138
    assert {line["name"] for line in lines} == {*urls, "http://x.test/download-fail/a.jpg"}
    assert verdicts["failed"] == 1
    assert sum(verdicts.values()) == 138


# ------------------------------------------------------------------- as scripts


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("TUPU_SECRET_ID", "TUPU_PRIVATE_KEY", "TUPU_BASE_URL", "TUPU_PUBLIC_KEY"):
        env.pop(var, None)
    return env


def test_crawler_script_with_the_fake_server(tmp_path: pathlib.Path) -> None:
    urls_file = tmp_path / "urls.txt"
    urls_file.write_text("\n".join(f"http://images.test/s/{i}.jpg" for i in range(40)))
    out = tmp_path / "out.jsonl"

    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "crawler.py"), str(urls_file), str(out), "--fake"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 40
    assert "pass" in proc.stdout


def test_crawler_script_runs_the_shipped_url_list(tmp_path: pathlib.Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "crawler.py"), "--fake"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        cwd=tmp_path,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    shipped = [
        line
        for line in (EXAMPLES / "urls.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [line["name"] for line in sorted(lines, key=lambda x: x["index"])] == shipped
    assert "block: 1" in proc.stdout  # porn-023
    assert "failed: 1" in proc.stdout  # download-fail-038
    assert f"{len(shipped)} results in results.jsonl" in proc.stdout


def test_crawler_without_its_url_file_says_so_and_leaves_no_output(tmp_path: pathlib.Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "crawler.py"), "missing.txt", "out.jsonl", "--fake"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        cwd=tmp_path,
        check=False,
    )

    assert proc.returncode == 1
    assert "error: missing.txt: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_the_sample_image_is_a_small_jpeg() -> None:
    data = (EXAMPLES / "cat.jpg").read_bytes()
    assert data.startswith(b"\xff\xd8\xff")
    assert len(data) < 4096


def _third_party_imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "tupu_async"}


def _requirement_names(extra: str) -> set[str]:
    """Distributions that ``pip install tupu-async[extra]`` brings (as installed metadata says)."""
    names = {"tupu-async"}
    for requirement in importlib.metadata.requires("tupu-async") or []:
        spec, _, marker = requirement.partition(";")
        extras = re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if not extras or extra in extras:
            names.add(re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0].lower())
    return names


def test_every_example_import_comes_with_the_examples_extra() -> None:
    provided = _requirement_names("examples")
    owners = importlib.metadata.packages_distributions()
    for path in sorted(EXAMPLES.glob("*.py")):
        for module in sorted(_third_party_imports(path)):
            dists = {d.lower() for d in owners.get(module, [])}
            assert dists & provided, f"{path.name} imports {module}, not in the examples extra"


@pytest.mark.parametrize("script", ["fastapi_app", "aiohttp_app", "flask_app"])
def test_web_app_scripts_serve_uploads_with_the_fake_server(script: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / f"{script}.py"), "--fake", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    try:
        url = f"http://127.0.0.1:{port}/moderate"
        deadline = time.monotonic() + 60
        response = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                sample = (EXAMPLES / "cat.jpg").read_bytes()  # what the curl lines upload
                response = httpx.post(url, files=upload("cat.jpg", sample), timeout=10)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response is not None, "the example app did not start"
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "cat.jpg"
        assert response.json()["verdict"] in ("pass", "review")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_testing_your_app_example_passes_under_pytest() -> None:
    example = str(EXAMPLES / "testing_your_app.py")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", example],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES,
        env=_env(),
        check=False,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 passed" in proc.stdout
