"""A real S3-compatible server on loopback (moto's server mode), started once for tests/store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pytest
from moto.server import ThreadedMotoServer

from store.settings import Settings


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def new_bucket(self) -> str:
        """A fresh, empty bucket, so that tests never see each other's objects."""
        bucket = f"fewshot-{uuid.uuid4().hex[:12]}"
        fsspec.filesystem("s3", endpoint_url=self.endpoint_url, use_listings_cache=False).mkdir(bucket)
        return bucket

    def objects(self, bucket: str) -> list[str]:
        """Every object key in the bucket, read by a fresh client."""
        fs = fsspec.filesystem("s3", endpoint_url=self.endpoint_url, use_listings_cache=False, skip_instance_cache=True)
        return sorted(path.removeprefix(f"{bucket}/") for path in fs.find(bucket))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    home = tmp_path_factory.mktemp("aws")  # no ~/.aws of this machine's user leaks in
    env = {
        "AWS_ACCESS_KEY_ID": "fewshot-test", "AWS_SECRET_ACCESS_KEY": "fewshot-test", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield S3Server(f"http://{host}:{port}")
        finally:
            server.stop()


def s3_settings(data_dir: Path, server: S3Server, bucket: str, prefix: str = "fewshot") -> Settings:
    return Settings(data_dir=data_dir, artifact_url=f"s3://{bucket}/{prefix}", s3_endpoint_url=server.endpoint_url)
