"""A real PostgreSQL server for the end-to-end tests (tests/pg/pgtest.sh).

One server per pytest worker (session scope), one fresh database per test:
`pg` yields a PgDb with the URL of its own database, psql access, and
control of the server (restart, kill) for the tests that need it. A test
that restarts or kills the server asks for `pg_own` instead, which starts a
server of its own so that other tests on the worker are not disturbed.
"""
import base64
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

PGTEST = str(Path(__file__).resolve().parents[1] / "pg" / "pgtest.sh")


def free_port():
    """A loopback port nothing listens on now (the servers and daemons of the tests bind it next)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="certsync-e2e-pg.")
        self.port = free_port()
        self.url = subprocess.run(["sh", PGTEST, "start", self.dir, str(self.port)], check=True,
                                  capture_output=True, text=True).stdout.strip()
        self.password = (Path(self.dir) / "pw").read_text().strip()

    def psql(self, sql, db="certsync"):
        """Runs sql as the certsync user; returns stdout rows (unaligned, tuples only)."""
        env = dict(os.environ, PGPASSWORD=self.password)
        r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                            str(self.port), "-U", "certsync", "-d", db, "-c", sql],
                           capture_output=True, text=True, env=env)
        if r.returncode:
            raise AssertionError(f"psql {sql!r}: {r.stderr}")
        return r.stdout.strip()

    def restart(self):
        subprocess.run(["sh", PGTEST, "restart", self.dir], check=True, capture_output=True)

    def stop(self):
        subprocess.run(["sh", PGTEST, "stop", self.dir], check=False, capture_output=True)

    def start(self):
        subprocess.run(["sh", PGTEST, "start", self.dir, str(self.port)], check=True, capture_output=True)

    def kill(self):
        subprocess.run(["sh", PGTEST, "kill", self.dir], check=False, capture_output=True)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PgDb:
    """One database on a server: url (with the password), psql(), and the server itself."""

    def __init__(self, server):
        self.server = server
        self.name = "t_" + uuid.uuid4().hex[:12]
        server.psql(f"CREATE DATABASE {self.name}")
        self.url = f"postgresql://certsync:{server.password}@127.0.0.1:{server.port}/{self.name}"
        self.password = server.password
        self.key = base64.b64encode(os.urandom(32)).decode()  # a state.encryptionKey

    def psql(self, sql):
        return self.server.psql(sql, db=self.name)

    def env(self, **extra):
        """Environment for certsync: the URL and the key come from variables, as in the examples."""
        return dict(CERTSYNC_DATABASE_URL=self.url, CERTSYNC_STATE_KEY=self.key, **extra)


def state_yaml(schema="certsync", lease="15s"):
    """The config's state section for the postgres backend (URL and key from the environment)."""
    return ("state:\n  backend: postgres\n  url: {env: CERTSYNC_DATABASE_URL}\n"
            f"  schema: {schema}\n  encryptionKey: {{env: CERTSYNC_STATE_KEY}}\n  leaseDuration: {lease}\n")


def use_postgres(env, db, schema="certsync", lease="15s"):
    """Switches an Env's config to the postgres backend and its processes' environment to db's."""
    text = env.config.read_text()
    start = text.index("state:\n")
    end = start + len("state:\n")
    while end < len(text) and text[end] == " ":
        end = text.index("\n", end) + 1
    env.config.write_text(text[:start] + state_yaml(schema, lease) + text[end:])
    # env.run/popen inherit os.environ, where the pg fixtures put db.env() for the test's duration.


@pytest.fixture(scope="session")
def pg_server():
    s = PgServer()
    yield s
    s.close()


@pytest.fixture
def pg(pg_server, monkeypatch):
    db = PgDb(pg_server)
    for k, v in db.env().items():
        monkeypatch.setenv(k, v)
    yield db


@pytest.fixture
def pg_own(monkeypatch):
    s = PgServer()
    db = PgDb(s)
    for k, v in db.env().items():
        monkeypatch.setenv(k, v)
    yield db
    s.close()
