"""A real S3 API on 127.0.0.1 for tests: moto's server in a thread, with fake credentials.

Nothing leaves the machine: the endpoint is loopback, and the AWS variables give every
SDK (pyarrow's C++ one, boto3) fake keys, no config files and no instance-metadata lookup,
which would otherwise try 169.254.169.254 for credentials.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import pyarrow.fs as pafs

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """Yield the 'host:port' of a fresh moto S3 server; the environment is restored after."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in FAKE_AWS_ENV}
    os.environ.update(FAKE_AWS_ENV)
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)  # one access-log line per request drowns test output
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # port 0: a free one
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"{host}:{port}"
    finally:
        server.stop()
        werkzeug.setLevel(level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_bucket(endpoint: str, bucket: str) -> None:
    """Create `bucket` on the server; pyarrow refuses to unless allow_bucket_creation is set."""
    fs = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1",
                           access_key=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
                           secret_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"], allow_bucket_creation=True)
    fs.create_dir(bucket)


def s3_uri(endpoint: str, bucket: str, prefix: str = "prefix") -> str:
    """The URI form Ray Train and tinyreason.storage take for an S3-compatible server."""
    return f"s3://{bucket}/{prefix}?endpoint_override={endpoint}&scheme=http"
