"""Object storage on the MinIO SDK (MinIO in production, any S3 server locally).

Keys for data are content-addressed (`raw/audio/ab/ab12….mp3`), so writing the same bytes twice
is a no-op and nothing stored is ever overwritten with different content.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from minio import Minio
from minio.error import S3Error

from musicvae.core.config import Settings


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_key(prefix: str, sha256: str, suffix: str) -> str:
    """`raw/audio` + hash + `.mp3` -> `raw/audio/ab/ab12….mp3` (fan-out keeps listings short)."""
    return f"{prefix}/{sha256[:2]}/{sha256}{suffix}"


class ObjectStore:
    def __init__(self, settings: Settings):
        self.bucket = settings.bucket
        self.client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
        )

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise
        return True

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream"):
        self.client.put_object(
            self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
        )

    def put_if_absent(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> bool:
        """Upload unless the key exists; content-addressed keys make existence mean equality."""
        if self.exists(key):
            return False
        self.put_bytes(key, data, content_type)
        return True

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream"):
        self.client.fput_object(self.bucket, key, str(path), content_type=content_type)

    def get_bytes(self, key: str) -> bytes:
        response = self.client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def put_json(self, key: str, value) -> None:
        self.put_bytes(key, json.dumps(value, indent=2, default=str).encode(), "application/json")

    def get_json(self, key: str):
        return json.loads(self.get_bytes(key))

    def remove(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def list_keys(self, prefix: str) -> Iterator[str]:
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            yield obj.object_name

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def presigned_url(self, key: str, expires: timedelta) -> str:
        """A link that reads one object until it expires; the bucket stays private."""
        return self.client.presigned_get_object(self.bucket, key, expires=expires)
