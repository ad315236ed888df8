"""Where results and the cache index keep their files: a local folder, or any fsspec URL.

`LEDGERFLOW_RESULTS_URL` picks it (default: `<home>/results`). A plain path or a `file://` URL
is a local folder, possibly shared by several machines (NFS); `s3://bucket/prefix`, `gs://...`
and every other fsspec protocol go through fsspec, so a replay, a cache hit or a downstream task
on another machine finds what this one stored.

Both write a whole file or nothing: a local file goes to a temporary name and is renamed, an
object store's put is atomic. Readers of a missing key get FileNotFoundError.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

__all__ = ["FsspecFolder", "LocalFolder", "Storage", "open_storage"]


class Storage(Protocol):
    location: str

    def write(self, key: str, payload: bytes) -> None: ...

    def read(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def child(self, name: str) -> Storage: ...


class LocalFolder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def write(self, key: str, payload: bytes) -> None:
        path = os.path.join(self.root, key)
        partial = f"{path}.{os.getpid()}.{threading.get_ident()}.partial"
        with open(partial, "wb") as file:
            file.write(payload)
        os.replace(partial, path)  # readers never see a half-written file

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def exists(self, key: str) -> bool:
        return os.path.exists(os.path.join(self.root, key))

    def child(self, name: str) -> LocalFolder:
        return LocalFolder(self.root / name)


class FsspecFolder:
    """A prefix of an fsspec filesystem (credentials and endpoints as that filesystem reads
    them: for S3, the usual AWS variables such as AWS_ENDPOINT_URL)."""

    def __init__(self, url: str) -> None:
        import fsspec  # only when results live elsewhere: the local default does not load it

        self.location = url.rstrip("/")
        self.fs: Any
        self.fs, self.path = fsspec.core.url_to_fs(self.location)
        self.path = self.path.rstrip("/")

    def _key(self, key: str) -> str:
        return f"{self.path}/{key}"

    def write(self, key: str, payload: bytes) -> None:
        self.fs.pipe_file(self._key(key), payload)

    def read(self, key: str) -> bytes:
        data: bytes = self.fs.cat_file(self._key(key))
        return data

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._key(key)))

    def child(self, name: str) -> FsspecFolder:
        return FsspecFolder(f"{self.location}/{name}")


def open_storage(location: str | Path) -> Storage:
    """The storage at `location`: a path or `file://` URL (a local folder), or an fsspec URL."""
    if isinstance(location, Path):
        return LocalFolder(location)
    parts = urlsplit(location)
    if parts.scheme == "file":
        return LocalFolder(Path(unquote(parts.netloc + parts.path)))
    if len(parts.scheme) <= 1:  # no scheme, or a Windows drive letter
        return LocalFolder(Path(location).expanduser())
    return FsspecFolder(location)
