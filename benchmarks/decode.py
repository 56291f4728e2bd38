"""Decode benchmark: our msgspec decode of a 10-image response vs json+dicts vs pydantic.

All three do the same job side by side in one run: parse the outer envelope, parse the
signed text, and produce one record per image holding that image's entry of every task
plus its summary line (the regroup callers need). Verification is measured separately,
because it is the same RSA call for all three.

Also measures the client's CPU per request and per image for the whole request path
(sign with a 2048-bit key + build the body + verify + decode + regroup), which is what
the 500 images/s ceiling costs the client's event loop.

Run: python benchmarks/decode.py   (writes benchmarks/results/decode.json)
"""

from __future__ import annotations

import json
import pathlib
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from tupu_async._envelope import decode_inner, open_envelope
from tupu_async._images import PreparedImage
from tupu_async._regroup import regroup
from tupu_async._requests import build_json_request
from tupu_async._signing import Signer, sign_message

RESULTS = pathlib.Path(__file__).parent / "results"
PORN, POLITICAL, VIOLENCE, OCR = (
    "54bcfc6c329af61034f7c2fc",
    "5b7be1f59b0c77a8c2afb351",
    "5e1d70adeec2874f7318dc52",
    "5e1d634d2809c24f6d909bd3",
)


def make_response(n: int = 10) -> tuple[str, list[str]]:
    """A realistic signed 10-image response (four tasks + summary), as the service sends."""
    names = [f"http://img.example.com/photos/2026/11/{i:04d}.jpg?x=1&y=2" for i in range(n)]
    box = [[0.3, 0.18], [0.5, 0.18], [0.5, 0.37], [0.3, 0.37]]
    inner: dict[str, Any] = {
        PORN: {
            "fileList": [
                {
                    "name": nm,
                    "label": 2,
                    "rate": 0.98,
                    "review": False,
                    "tag": f"t{i}",
                    "subLabel": {"label": 18, "rate": 0.2, "review": False},
                }
                for i, nm in enumerate(names)
            ],
            "reviewCount": 0,
            "statistic": [0, 0, n],
        },
        POLITICAL: {
            "fileList": [
                {
                    "name": nm,
                    "label": 2,
                    "review": False,
                    "similarity": 0,
                    "faceId": "非政治人物",
                    "facePosition": box,
                    "typeName": "非政治人物",
                    "tag": f"t{i}",
                    "objects": [
                        {
                            "faceId": "非政治人物",
                            "facePosition": box,
                            "label": 2,
                            "review": False,
                            "similarity": 0,
                            "typeName": "非政治人物",
                        }
                    ],
                }
                for i, nm in enumerate(names)
            ]
        },
        VIOLENCE: {
            "fileList": [
                {
                    "name": nm,
                    "label": 0,
                    "rate": 0.999,
                    "review": False,
                    "tag": f"t{i}",
                    "labels": [0, 10, 25, 8, 13],
                    "rates": [0.999, 0.0002, 0.0001, 0.0001, 0.0001],
                }
                for i, nm in enumerate(names)
            ],
            "reviewCount": 0,
            "topNStatistic": [{"count": n, "label": 0}],
        },
        OCR: {
            "fileList": [
                {"name": nm, "label": 0, "rate": 1, "review": False, "objects": [], "tag": f"t{i}"}
                for i, nm in enumerate(names)
            ]
        },
        "code": 0,
        "message": "success",
        "nonce": 0.265046801,
        "requestId": "73346487-e19a-49ac-944c-cd50081a2e61",
        "summary": [
            {"code": 0, "name": nm, "suggestion": 0, "riskType": 0, "riskTask": "", "tag": f"t{i}"}
            for i, nm in enumerate(names)
        ],
        "timestamp": 1673346488265,
    }
    text = json.dumps(inner, ensure_ascii=False, separators=(",", ":"))
    return text, names


def bench(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Best-of-5 mean seconds per call."""
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t > 0.05:
            break
        n *= 2
    runs = []
    reps = max(1, int(seconds / 5 / ((time.perf_counter() - t) / n)))
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        runs.append((time.perf_counter() - t) / reps)
    return min(runs)


def main() -> None:
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    text, names = make_response()
    body = json.dumps({"json": text, "signature": sign_message(server_key, text.encode())}).encode()
    sent = [PreparedImage(i, nm, url=nm, tag=f"t{i}") for i, nm in enumerate(names)]

    def ours() -> object:
        return regroup(decode_inner(open_envelope(body, None)), sent)

    def plain_json() -> object:
        outer = json.loads(body)
        data = json.loads(outer["json"])
        tasks = {k: v for k, v in data.items() if isinstance(v, dict) and "fileList" in v}
        out = []
        summary = data.get("summary") or []
        for i, nm in enumerate(names):
            per = {}
            for task_id, task in tasks.items():
                for entry in task["fileList"]:
                    if entry.get("name") == nm:
                        per[task_id] = entry
                        break
            out.append(
                {"name": nm, "summary": summary[i] if i < len(summary) else None, "tasks": per}
            )
        return out

    import pydantic

    class PSub(pydantic.BaseModel):
        label: int | str | None = None
        rate: float | None = None
        review: bool | None = None

    class PFile(pydantic.BaseModel):
        name: str | None = None
        label: int | None = None
        rate: float | None = None
        review: bool | None = None
        tag: str | None = None
        subLabel: PSub | None = None
        objects: list[dict[str, Any]] | None = None
        labels: list[int] | None = None
        rates: list[float] | None = None
        similarity: float | None = None
        faceId: str | None = None
        facePosition: list[list[float]] | None = None
        typeName: str | None = None

    class PTask(pydantic.BaseModel):
        fileList: list[PFile] = []
        statistic: list[int] | None = None
        reviewCount: int | None = None

    class PSummary(pydantic.BaseModel):
        code: int = 0
        name: str | None = None
        suggestion: int | None = None
        riskType: int | None = None
        riskTask: str | None = None
        tag: str | None = None

    class POuter(pydantic.BaseModel):
        json_: str = pydantic.Field(alias="json")
        signature: str

    task_adapter = pydantic.TypeAdapter(dict[str, Any])
    ptask = pydantic.TypeAdapter(PTask)
    psummary = pydantic.TypeAdapter(list[PSummary])

    def with_pydantic() -> object:
        outer = POuter.model_validate_json(body)
        data = task_adapter.validate_json(outer.json_)
        tasks = {
            k: ptask.validate_python(v)
            for k, v in data.items()
            if isinstance(v, dict) and "fileList" in v
        }
        summary = psummary.validate_python(data.get("summary") or [])
        out = []
        for i, nm in enumerate(names):
            per = {}
            for task_id, task in tasks.items():
                for entry in task.fileList:
                    if entry.name == nm:
                        per[task_id] = entry
                        break
            out.append((nm, summary[i], per))
        return out

    t_ours = bench(ours)
    t_json = bench(plain_json)
    t_pyd = bench(with_pydantic)
    pub = server_key.public_key()
    t_verify = bench(lambda: open_envelope(body, pub))

    # The whole client path per request: sign (2048-bit) + build + verify + decode + regroup.
    signer = Signer("bench-secret", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    signer_1024 = Signer(
        "bench-secret", rsa.generate_private_key(public_exponent=65537, key_size=1024)
    )

    def request_path(s: Signer) -> Callable[[], object]:
        def run() -> object:
            req = build_json_request("bench-secret", sent, tasks=None)
            req.body(s.sign())
            return regroup(decode_inner(open_envelope(body, pub)), sent)

        return run

    def cpu_per_call(fn: Callable[[], object], n: int = 400) -> float:
        t = time.process_time()
        for _ in range(n):
            fn()
        return (time.process_time() - t) / n

    t_sign = cpu_per_call(lambda: signer.sign())
    t_path_2048 = cpu_per_call(request_path(signer))
    t_path_1024 = cpu_per_call(request_path(signer_1024))

    results = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "response_bytes": len(body),
        "images_per_response": len(names),
        "decode_us": {
            "tupu_async": t_ours * 1e6,
            "json_dicts": t_json * 1e6,
            "pydantic": t_pyd * 1e6,
        },
        "ratio_vs_json_dicts": t_json / t_ours,
        "ratio_vs_pydantic": t_pyd / t_ours,
        "verify_us_rsa1024": t_verify * 1e6,
        "sign_us_rsa2048": t_sign * 1e6,
        "client_cpu_per_request_us": {"rsa2048": t_path_2048 * 1e6, "rsa1024": t_path_1024 * 1e6},
        "client_cpu_per_image_us": {
            "rsa2048": t_path_2048 * 1e5,
            "rsa1024": t_path_1024 * 1e5,
            "excluding_signing_rsa2048": (t_path_2048 - t_sign) * 1e5,
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "decode.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"decode of one {len(names)}-image response ({len(body):,} bytes), verify excluded:")
    print(f"  {'tupu_async (msgspec)':<24}{t_ours * 1e6:9.1f} us   1.00x")
    print(f"  {'json.loads + dicts':<24}{t_json * 1e6:9.1f} us   {t_json / t_ours:.2f}x slower")
    print(f"  {'pydantic v2':<24}{t_pyd * 1e6:9.1f} us   {t_pyd / t_ours:.2f}x slower")
    print(f"verify (RSA-1024, the service's key): {t_verify * 1e6:.1f} us per response")
    print(f"sign (RSA-2048): {t_sign * 1e6:.1f} us per request")
    print("client CPU, whole path per request (sign+build+verify+decode+regroup):")
    print(
        f"  RSA-2048 key: {t_path_2048 * 1e6:.0f} us/request = {t_path_2048 * 1e5:.1f} us/image"
        f" ({(t_path_2048 - t_sign) * 1e5:.1f} us/image excluding the RSA signature)"
    )
    print(f"  RSA-1024 key: {t_path_1024 * 1e6:.0f} us/request = {t_path_1024 * 1e5:.1f} us/image")


if __name__ == "__main__":
    main()
