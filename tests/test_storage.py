"""The local S3 server, as the test suite and a long-lived dev stack use it."""

import io
import uuid
from dataclasses import replace

from musicvae.core.storage import ObjectStore


def test_the_s3_server_takes_writes_in_more_buckets_than_its_default_volume_cap(servers):
    # By default `weed mini` caps its volumes at free disk / volume size (about 70 with
    # 80 GB free) and gives each bucket a volume of its own, so the bucket after that
    # got a 500 on every write: the suite makes a bucket per test.
    for _ in range(100):
        s = replace(servers.settings(), bucket=f"many-{uuid.uuid4().hex[:12]}")
        store = ObjectStore(s)
        store.ensure_bucket()
        store.client.put_object(s.bucket, "k", io.BytesIO(b"x" * 100), 100)
        assert store.client.get_object(s.bucket, "k").read() == b"x" * 100
