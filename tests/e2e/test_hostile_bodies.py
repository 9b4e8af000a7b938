"""Hostile bodies against a real `fewshot serve`: bounded as they stream, budgets read from image
headers before decoding, numbers outside float32 refused; the API's memory measured while it answers.

The API runs inside the `fewshot serve` process (one API worker), so its RSS is that process's.
"""

from __future__ import annotations

import base64
import io
import socket
import struct
import threading
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from models.episodes import ImageFormat, ProblemSpec
from service.errors import InvalidInput, PayloadTooLarge
from service.inputs import InputBudget, check_finite_outputs, parse_inputs
from tests.e2e.api_support import QUICK_SINE, assert_error, client, pattern_png, pattern_zip, served, wait_job

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
UPLOAD_LIMIT = 64 * MiB  # below the 200 MB sent; the default (512 MiB) is above it
RSS_GROWTH_LIMIT = 100 * MiB
FAST = 15.0  # seconds; on today's main the 200 MB chunked body took 46 s


def blank_png(width: int, height: int) -> bytes:
    """A black greyscale PNG, compressed row by row: 13000x13000 is ~164 KB, never 169 MB in memory here."""
    row = b"\x00" * (width + 1)  # filter byte + pixels
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    data = blank_png(13000, 13000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # PIL's own guard warns past 89 M pixels
        with Image.open(io.BytesIO(data)) as image:  # a real PNG PIL reads
            assert image.size == (13000, 13000) and image.mode == "L"
    return data


class RssWatch:
    """Samples a process's VmRSS every few milliseconds; `growth` is the peak over the baseline."""

    def __init__(self, pid: int) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.baseline = self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def rss(self) -> int:
        line = next(x for x in self.status.read_text().splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    def restart(self) -> None:
        """Measure from now (after a warm-up that loads a model, say)."""
        self.baseline = self.peak = self.rss()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    with served(tmp_path_factory.mktemp("hostile"), redis_db=5, FEWSHOT_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT)) as serve:
        yield serve


@pytest.fixture(scope="module")
def api(serve):
    with client(serve) as c:
        yield c


@pytest.fixture
def watch(serve) -> Iterator[RssWatch]:
    assert serve.process is not None
    with RssWatch(serve.process.pid) as w:
        yield w
    assert w.growth < RSS_GROWTH_LIMIT, f"the API grew by {w.growth / MiB:.0f} MiB"


@pytest.fixture(scope="module")
def sine_model(api) -> str:
    job = api.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE}).json()
    job = wait_job(api, job["id"])
    assert job["status"] == "succeeded", job
    return job["model_id"]


@pytest.fixture(scope="module")
def sine_task(api, sine_model) -> str:
    support = {"inputs": [[-2.0], [-1.0], [0.0], [1.0], [2.0]], "labels": [0.1, -0.8, -0.9, 0.0, 0.9]}
    r = api.post(f"/v1/models/{sine_model}/tasks", json={"support": support})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def image_task(api) -> str:
    ds = api.post("/v1/datasets", files={"file": ("shapes.zip", pattern_zip())})
    assert ds.status_code == 201, ds.text
    config = {"steps": 3, "n_way": 2, "k_shot": 1, "k_query": 2, "meta_batch_size": 2, "eval_episodes": 2,
              "checkpoint_every": 0}
    job = api.post("/v1/jobs", json={"algorithm": "protonet", "dataset": ds.json()["id"], "config": config}).json()
    job = wait_job(api, job["id"])
    assert job["status"] == "succeeded", job
    support = {"inputs": [base64.b64encode(pattern_png(c, 0)).decode() for c in (0, 1)], "labels": ["a", "b"]}
    r = api.post(f"/v1/models/{job['model_id']}/tasks", json={"support": support})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _chunks(total: int, head: bytes = b"", tail: bytes = b"") -> Iterator[bytes]:
    """A body of `total` bytes with no length: httpx sends it with Transfer-Encoding: chunked."""
    yield head
    block = b"0" * MiB
    for _ in range(total // MiB):
        yield block
    yield tail


def test_chunked_json_body_past_the_limit_is_413_before_it_is_buffered(api, watch):
    start = time.perf_counter()
    r = api.post("/v1/models/mdl_x/tasks", content=_chunks(200 * MiB), headers={"content-type": "application/json"})
    elapsed = time.perf_counter() - start
    error = assert_error(r, 413, "payload_too_large")
    assert "33554432 bytes" in error["message"] and "FEWSHOT_MAX_REQUEST_BYTES" in error["message"], error
    assert elapsed < FAST, elapsed
    print(f"\nchunked 200 MB JSON body: 413 in {elapsed:.2f} s, API RSS +{watch.growth / MiB:.1f} MiB")


def test_a_body_of_millions_of_numbers_is_413_before_it_is_parsed(api, sine_task, watch):
    """31 MB of numbers is under the byte limit, but parsing it as JSON took +151 MiB."""
    body = b'{"inputs": [' + b"[0.123456789012]," * (31 * MiB // 17) + b"[0.5]]}"
    start = time.perf_counter()
    r = api.post(f"/v1/tasks/{sine_task}/predictions", content=body, headers={"content-type": "application/json"})
    elapsed = time.perf_counter() - start
    error = assert_error(r, 413, "too_many_numbers")
    assert "1048576 numbers" in error["message"] and "FEWSHOT_MAX_REQUEST_NUMBERS" in error["message"], error
    assert elapsed < FAST, elapsed
    print(f"\n31 MB of numbers: 413 in {elapsed:.2f} s, API RSS +{watch.growth / MiB:.1f} MiB")


def test_chunked_upload_past_the_limit_is_413(api, watch):
    boundary = "hostileboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.zip\"\r\n"
            "Content-Type: application/zip\r\n\r\n").encode()
    start = time.perf_counter()
    r = api.post("/v1/datasets", content=_chunks(200 * MiB, head, f"\r\n--{boundary}--\r\n".encode()),
                 headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    elapsed = time.perf_counter() - start
    error = assert_error(r, 413, "payload_too_large")
    assert str(UPLOAD_LIMIT) in error["message"] and "FEWSHOT_MAX_UPLOAD_BYTES" in error["message"], error
    assert elapsed < FAST, elapsed
    print(f"\nchunked 200 MB upload: 413 in {elapsed:.2f} s, API RSS +{watch.growth / MiB:.1f} MiB")


def test_declared_length_past_the_limit_is_413_before_any_byte_is_sent(serve):
    with socket.create_connection(("127.0.0.1", serve.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/mdl_x/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {40 * MiB}\r\n\r\n".encode())
        answer = b""
        while b"}}" not in answer:
            data = sock.recv(65536)
            assert data, answer
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"41943040 bytes" in answer and b"FEWSHOT_MAX_REQUEST_BYTES" in answer, answer


def test_a_13000x13000_png_input_is_refused_from_its_header(api, image_task, huge_png, watch):
    ok = api.post(f"/v1/tasks/{image_task}/predictions", json={"inputs": [base64.b64encode(pattern_png(0, 1)).decode()]})
    assert ok.status_code == 200 and ok.json()["predictions"] == ["a"], ok.text  # the model is loaded: not measured below
    watch.restart()
    start = time.perf_counter()
    r = api.post(f"/v1/tasks/{image_task}/predictions", json={"inputs": [base64.b64encode(huge_png).decode()]})
    elapsed = time.perf_counter() - start
    error = assert_error(r, 422, "image_too_large")
    assert error["param"] == "inputs[0]" and "13000x13000" in error["message"], error
    assert "16777216 pixels" in error["message"] and "FEWSHOT_MAX_IMAGE_PIXELS" in error["message"], error
    assert elapsed < 2.0, elapsed  # decoding it took 2.8 s of API CPU
    print(f"\n13000x13000 PNG ({len(huge_png) // 1024} KB): 422 in {elapsed * 1000:.0f} ms, "
          f"API RSS +{watch.growth / MiB:.1f} MiB")


def test_a_13000x13000_png_in_an_uploaded_zip_is_refused_from_its_header(api, huge_png, watch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("shapes/big/0.png", huge_png)
        for cls in range(6):
            for v in range(2):
                z.writestr(f"shapes/c{cls}/{v}.png", pattern_png(cls, v))
    start = time.perf_counter()
    r = api.post("/v1/datasets", files={"file": ("big.zip", buf.getvalue())})
    elapsed = time.perf_counter() - start
    error = assert_error(r, 422, "invalid_dataset")
    assert "shapes/big/0.png" in error["message"] and "FEWSHOT_MAX_IMAGE_PIXELS" in error["message"], error
    assert elapsed < 2.0, elapsed
    print(f"\n13000x13000 PNG in a zip: 422 in {elapsed * 1000:.0f} ms, API RSS +{watch.growth / MiB:.1f} MiB")


def test_inputs_outside_float32_are_422_naming_the_field(api, sine_task):
    r = api.post(f"/v1/tasks/{sine_task}/predictions", json={"inputs": [[1.0], [1e308]]})
    error = assert_error(r, 422, "out_of_range")
    assert error["param"] == "inputs[1]" and "float32" in error["message"], error
    r = api.post(f"/v1/tasks/{sine_task}/predictions", json={"inputs": [[1e308]]})
    assert assert_error(r, 422, "out_of_range")["param"] == "inputs[0]"


def test_regression_labels_outside_float32_are_422(api, sine_model):
    support = {"inputs": [[0.0], [1.0]], "labels": [1e39, 1.0]}
    error = assert_error(api.post(f"/v1/models/{sine_model}/tasks", json={"support": support}), 422, "out_of_range")
    assert error["param"] == "support.labels[0]", error


def test_job_config_outside_float32_is_422(api):
    """A key with no upper bound of its own says float32; one with a tighter range says that range."""
    body = {"algorithm": "maml", "dataset": "sinusoid", "config": {**QUICK_SINE, "divergence_factor": 1e39}}
    error = assert_error(api.post("/v1/jobs", json=body), 422)
    assert error["param"] == "config.divergence_factor" and "float32" in error["message"], error
    body = {"algorithm": "maml", "dataset": "sinusoid", "config": {**QUICK_SINE, "inner_lr": 1e39}}
    error = assert_error(api.post("/v1/jobs", json=body), 422)
    assert error["param"] == "config.inner_lr" and "(0, 10]" in error["message"], error


def test_a_prediction_is_never_null(api, sine_model):
    """Labels of 1e38 are finite in float32, but their squared error is not: the adapted task either
    fails, or its non-finite outputs are a 422, never a 200 with null predictions (today's main)."""
    support = {"inputs": [[0.0], [1.0]], "labels": [1e38, 1.0]}
    r = api.post(f"/v1/models/{sine_model}/tasks", json={"support": support})
    if r.status_code == 422:
        assert_error(r, 422, "adaptation_failed")
        print("\nlabels [1e38, 1.0]: the adaptation failed (422), nothing to predict")
        return
    assert r.status_code == 201, r.text
    p = api.post(f"/v1/tasks/{r.json()['id']}/predictions", json={"inputs": [[0.5], [1.5]]})
    error = assert_error(p, 422, "non_finite_prediction")
    assert error["param"] == "inputs[0]" and "outside what the model handles" in error["message"], error
    print("\nlabels [1e38, 1.0]: a ready task whose predictions are a 422 non_finite_prediction")


def test_non_finite_outputs_are_422_naming_the_first_bad_input():
    check_finite_outputs(torch.tensor([[1.0], [2.0]]), "inputs")
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InvalidInput) as refused:
            check_finite_outputs(torch.tensor([[1.0, 0.0], [2.0, bad], [bad, 0.0]]), "inputs")
        assert refused.value.param == "inputs[1]" and refused.value.code == "non_finite_prediction"


IMAGE_SPEC = ProblemSpec((1, 28, 28), "classification", n_way=2, image=ImageFormat(size=28, invert=False))


def _png_b64(width: int, height: int) -> str:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_pixel_and_number_budgets_name_their_limit_and_setting():
    budget = InputBudget(image_pixels=10_000, request_pixels=25_000, request_numbers=784 * 3)
    assert parse_inputs([_png_b64(100, 100)] * 2, IMAGE_SPEC, "inputs", budget).shape == (2, 1, 28, 28)
    budget.pixels_used = 0
    with pytest.raises(PayloadTooLarge) as too_many:
        parse_inputs([_png_b64(100, 100)] * 3, IMAGE_SPEC, "inputs", budget)
    assert too_many.value.param == "inputs[2]" and too_many.value.code == "too_many_pixels"
    assert "25000 pixels" in too_many.value.message and "FEWSHOT_MAX_REQUEST_PIXELS" in too_many.value.message
    with pytest.raises(InvalidInput) as one_too_big:
        parse_inputs([_png_b64(101, 100)], IMAGE_SPEC, "inputs", InputBudget(10_000, 25_000, 10))
    assert one_too_big.value.code == "image_too_large" and "FEWSHOT_MAX_IMAGE_PIXELS" in one_too_big.value.message
    zeros = [[[0.0] * 28] * 28]
    with pytest.raises(PayloadTooLarge) as numbers:
        parse_inputs([zeros] * 4, IMAGE_SPEC, "inputs", InputBudget(10_000, 25_000, 784 * 3))
    assert numbers.value.code == "too_many_numbers" and "2352" in numbers.value.message
    assert "FEWSHOT_MAX_REQUEST_NUMBERS" in numbers.value.message
