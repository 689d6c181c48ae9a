"""Redis, the CeleryExecutor's broker: Debian's `redis-server`, configured by a file under the
stack's folder so that its password stays out of the process list."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from musicvae.core.errors import StackError
from musicvae.local.servers.processes import Processes, wait

REDIS_SERVER = "redis-server"


class RedisBroker:
    """`redis-server` with its data in `root/redis`, run as the process "redis"."""

    def __init__(
        self, root: Path, ports: dict[str, int], secrets: dict[str, str], processes: Processes
    ):
        self.root = root
        self.ports = ports
        self.secrets = secrets
        self.processes = processes

    @property
    def url(self) -> str:
        password, port = self.secrets["redis_password"], self.ports["redis"]
        return f"redis://:{password}@127.0.0.1:{port}/0"

    @property
    def running(self) -> bool:
        return self.processes.running("redis")

    def start(self) -> None:
        server = shutil.which(REDIS_SERVER)
        if server is None:
            raise StackError(
                "the CeleryExecutor stack needs Redis: apt-get install redis-server "
                "(make test installs it when run as root)"
            )
        if not self.running:
            data = self.root / "redis"
            data.mkdir(exist_ok=True)
            config = data / "redis.conf"
            # A config file, not arguments: the password stays out of the process list.
            config.write_text(
                f"bind 127.0.0.1\nport {self.ports['redis']}\ndir {data}\n"
                f'save ""\nappendonly no\nrequirepass {self.secrets["redis_password"]}\n'
            )
            config.chmod(0o600)
            self.processes.spawn("redis", [server, str(config)], dict(os.environ))
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=2)
        wait(client.ping, "Redis", 30, self.root / "logs" / "redis.log")

    def stop(self) -> None:
        self.processes.stop("redis")
