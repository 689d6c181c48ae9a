"""Landing zones: where a MERGE download is dropped, a local folder or an `s3://bucket/prefix`.

A landing lists its files with a version that changes when their content may have changed, and
reads them. When its root is one subset folder itself, it names the files as if it held that
folder, so track ids are the same either way.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from musicvae.core.errors import CatalogueError

# The six subset folders of a MERGE release and the subset names their metadata files carry.
SUBSETS = {
    f"MERGE_{kind.title()}_{size.title()}": f"{kind}_{size}"
    for kind in ("audio", "lyrics", "bimodal")
    for size in ("complete", "balanced")
}


@dataclass(frozen=True)
class FileStat:
    size: int
    # Local files: st_mtime_ns. S3 objects: a number derived from the ETag; either way, a value
    # that changes when the content may have changed.
    version: int


class Landing:
    """Where new MERGE downloads are dropped. Paths are POSIX, relative to the landing root."""

    def files(self) -> Iterator[tuple[str, FileStat]]:
        raise NotImplementedError

    def read(self, rel: str) -> bytes:
        with self.stream(rel) as f:
            return f.read()

    def stream(self, rel: str) -> AbstractContextManager[BinaryIO]:
        """The file as a binary stream, read as it is consumed."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def contains(self, rel: str) -> bool:
        """Whether a file or folder `rel` exists directly under the root."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The root's own folder name."""
        return PurePosixPath(self.describe().rstrip("/")).name

    def uri(self, rel: str) -> str:
        """Where a file is, for people and for the ingest's hash cache."""
        return f"{self.describe().rstrip('/')}/{rel}"

    @staticmethod
    def open(location: str, store=None) -> Landing:
        if location.startswith("s3://"):
            if store is None:
                raise CatalogueError("an s3:// landing zone needs an object store client")
            bucket, _, prefix = location[len("s3://") :].partition("/")
            landing: Landing = S3Landing(store.client, bucket, prefix)
        else:
            path = Path(location)
            if not path.is_dir():
                raise CatalogueError(
                    f"landing zone {location!r} is not a folder; set MUSICVAE_LANDING to the "
                    "folder that holds the unzipped MERGE_* folders, or to one of them (or to "
                    "s3://bucket/prefix)"
                )
            landing = LocalLanding(path)
        folder = _subset_folder(landing)
        return SubsetFolderLanding(landing, folder) if folder else landing


def _subset_folder(landing: Landing) -> str | None:
    """The MERGE folder name when the landing root is one subset folder itself, else None.

    A root that holds subset folders is a parent, whatever it is called (unzipping often nests
    `MERGE_Audio_Complete/MERGE_Audio_Complete/`). Otherwise its name, or the metadata CSV in
    it, says which subset it is.
    """
    if any(landing.contains(folder) for folder in SUBSETS):
        return None
    if landing.name in SUBSETS:
        return landing.name
    for folder, subset in SUBSETS.items():
        if landing.contains(f"merge_{subset}_metadata.csv"):
            return folder
    return None


class LocalLanding(Landing):
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.skipped_links: list[str] = []

    def files(self) -> Iterator[tuple[str, FileStat]]:
        # scandir streams a folder's entries where os.walk would hold its whole listing, and a
        # release's quadrant folder holds its files by the ten thousand. Links are never
        # followed: one could point outside the landing zone.
        folders = [(self.root, "")]  # (folder, its path relative to the root)
        while folders:
            folder, prefix = folders.pop()
            with os.scandir(folder) as entries:
                for entry in entries:
                    rel = prefix + entry.name
                    if entry.is_symlink():
                        self.skipped_links.append(rel)
                    elif entry.is_dir(follow_symlinks=False):
                        folders.append((entry.path, rel + "/"))
                    else:
                        st = entry.stat(follow_symlinks=False)
                        yield rel, FileStat(st.st_size, st.st_mtime_ns)

    def stream(self, rel: str) -> AbstractContextManager[BinaryIO]:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            raise CatalogueError(f"{rel!r} resolves outside the landing zone; refusing to read it")
        return path.open("rb")

    def describe(self) -> str:
        return str(self.root)

    def contains(self, rel: str) -> bool:
        return (self.root / rel).exists()


class S3Landing(Landing):
    def __init__(self, client, bucket: str, prefix: str):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.skipped_links: list[str] = []

    def files(self) -> Iterator[tuple[str, FileStat]]:
        for obj in self.client.list_objects(self.bucket, prefix=self.prefix, recursive=True):
            rel = obj.object_name[len(self.prefix) :]
            etag = (obj.etag or "").strip('"')
            version = int(etag[:15], 16) if re.fullmatch(r"[0-9a-f]{15,}.*", etag) else 0
            yield rel, FileStat(obj.size, version)

    @contextmanager
    def stream(self, rel: str) -> Iterator[BinaryIO]:
        response = self.client.get_object(self.bucket, self.prefix + rel)
        response.auto_close = False  # else it reports itself closed at the end of the body
        try:
            yield io.BufferedReader(response)
        finally:
            response.close()
            response.release_conn()

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def contains(self, rel: str) -> bool:
        key = self.prefix + rel
        return any(
            obj.object_name.rstrip("/") == key
            for obj in self.client.list_objects(self.bucket, prefix=key)
        )


class SubsetFolderLanding(Landing):
    """One subset folder used as the landing zone. Its files are named as if the landing held
    the folder (`MERGE_Audio_Complete/Q1/A001.mp3`), so a track's id does not depend on which
    of the two the user points at, and switching between them duplicates nothing."""

    def __init__(self, inner: Landing, folder: str):
        self.inner, self.folder = inner, folder

    def files(self) -> Iterator[tuple[str, FileStat]]:
        for rel, stat in self.inner.files():
            yield f"{self.folder}/{rel}", stat

    def _inner_rel(self, rel: str) -> str:
        if not rel.startswith(self.folder + "/"):
            raise CatalogueError(f"{rel!r} is not in the landing zone's {self.folder} folder")
        return rel[len(self.folder) + 1 :]

    def stream(self, rel: str) -> AbstractContextManager[BinaryIO]:
        return self.inner.stream(self._inner_rel(rel))

    def describe(self) -> str:
        return self.inner.describe()

    def contains(self, rel: str) -> bool:
        return self.inner.contains(self._inner_rel(rel))

    def uri(self, rel: str) -> str:
        return self.inner.uri(self._inner_rel(rel))

    @property
    def skipped_links(self) -> list[str]:
        return [f"{self.folder}/{rel}" for rel in getattr(self.inner, "skipped_links", [])]
