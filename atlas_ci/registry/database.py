"""Where the registry's rows live: SQLite (the embedded default) or PostgreSQL.

One small interface, two implementations. Every caller writes SQL once, in the subset both
engines share, with ``?`` placeholders; this module turns it into each driver's dialect:

- ``?`` becomes psycopg's ``%s`` (and a literal ``%`` becomes ``%%``);
- DDL is written for SQLite: on PostgreSQL ``INTEGER PRIMARY KEY`` becomes an identity column
  (SQLite's row id), ``INTEGER`` becomes ``BIGINT`` and ``BLOB`` becomes ``BYTEA``;
- a new row's id comes back with ``INSERT ... RETURNING pk`` (SQLite has it since 3.35);
- :meth:`Connection.lock` serialises writers on one key for the rest of the transaction
  (``pg_advisory_xact_lock``; on SQLite every write transaction is ``BEGIN IMMEDIATE``, which
  already holds the one database-wide write lock);
- a constraint violation is :class:`IntegrityError`, a full disk :class:`DatabaseFull` and a
  lock held too long :class:`DatabaseBusy` on both; a PostgreSQL server that cannot be reached,
  or a connection that broke before COMMIT, is :class:`DatabaseUnavailable` (a kind of busy:
  nothing was done, try again);
- a Python bool is stored as 0/1 on both (flags are INTEGER columns).

Quote the column ``"user"`` (a reserved word in PostgreSQL), and prefer ``ON CONFLICT DO
NOTHING`` to ``INSERT OR IGNORE``. The PostgreSQL driver (psycopg 3) is imported only when a
``postgresql://`` URL is opened, so it stays an optional extra.

PostgreSQL restarts and fails over under a running server, which ends every pooled
connection. A connection is therefore checked when it is taken from the pool (a server that
ended it has said so on its socket: no round trip needed), and a transaction whose BEGIN
finds its pooled connection dead runs on a new one. Nothing else is ever re-run: a
statement is not sent twice once it may have done something.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import logging
import os
import queue
import re
import select
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

Dialect = Literal["sqlite", "postgresql"]
DEFAULT_SQLITE_NAME = "registry.sqlite3"
INSTALL_HINT = "pip install 'atlas-ci[postgres]'"
PG_POOL_SIZE = 20
"""Connections one server opens to PostgreSQL at most; more requests at once wait their turn."""
POOL_WAIT = 30.0
PG_LOCK_TIMEOUT_MS = 30_000
"""How long a statement waits for a lock (a row's, or a version number's) before the request
fails as busy: what SQLite's 30 s busy timeout is on the embedded default."""
UNREACHABLE_LOG_EVERY = 10.0
"""Seconds between two log lines saying the database cannot be reached (one per request
while it is down would flood the log)."""

log = logging.getLogger("atlas_ci.registry")


class DatabaseError(Exception):
    """The database failed or refused a statement; the message carries no credentials."""


class IntegrityError(DatabaseError):
    """A UNIQUE, FOREIGN KEY or CHECK constraint refused a row."""


class DatabaseFull(DatabaseError):
    """The database (or the disk under it) has no room for the write; nothing was changed."""


class DatabaseBusy(DatabaseError):
    """Another writer held a lock for longer than the wait allows, or every connection of the
    pool stayed in use; nothing was changed and the same request may be tried again."""


class DatabaseUnavailable(DatabaseBusy):
    """The database server cannot be reached (down, restarting, refusing this server's
    connections or its password), or the connection broke before anything was committed.

    Nothing was changed, so, like :class:`DatabaseBusy`, a client is told to try again
    (503 with ``Retry-After``). A connection lost during COMMIT is not this but a plain
    :class:`DatabaseError`: whether that transaction was committed is unknown.
    """


class DatabaseConfigError(Exception):
    """The database URL is unusable or its driver is missing (a configuration error, exit 2)."""


class Rows(Protocol):
    """What :meth:`Connection.execute` returns: the part both drivers' cursors share."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int) -> list[Any]: ...

    def close(self) -> None: ...

    def __iter__(self) -> Iterator[Any]: ...


@dataclasses.dataclass(frozen=True)
class DatabaseURL:
    """A parsed ``--database`` value. :attr:`shown` is what logs and errors may print."""

    dialect: Dialect
    raw: str
    shown: str
    sqlite_path: Path | None = None
    password: str | None = None
    env_password: str | None = None
    """``PGPASSWORD`` as it was when the URL was read: libpq uses it when the URL has none."""

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return f"DatabaseURL({self.shown!r})"

    def scrub(self, text: str) -> str:
        """``text`` with this URL's password (and ``PGPASSWORD``) and raw form cut out."""
        if self.raw and self.raw != self.shown:
            text = text.replace(self.raw, self.shown)
        for secret in (self.password, self.env_password):
            if secret:
                text = text.replace(secret, "***")
        return text


def parse_url(raw: str | None, data_dir: Path) -> DatabaseURL:
    """``sqlite:///abs/path``, ``sqlite:rel/path``, ``postgresql://user[:pw]@host[:port]/db``.

    None or empty: the SQLite file in ``data_dir`` (what ``atlas-ci serve`` always used).
    """
    if not raw:
        path = data_dir / DEFAULT_SQLITE_NAME
        return DatabaseURL("sqlite", "", _sqlite_shown(path), sqlite_path=path)
    scheme, sep, rest = raw.partition(":")
    scheme = scheme.lower()
    if not sep:
        raise DatabaseConfigError(
            f"--database {_blank_password(raw)!r} has no scheme; use sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DB"
        )
    if scheme == "sqlite":
        if rest.startswith("//"):
            parts = urlsplit(raw)
            if parts.netloc:
                raise DatabaseConfigError(
                    f"--database {_blank_password(raw)!r} names a host; a SQLite URL is sqlite:///ABSOLUTE/PATH"
                )
            path_text = unquote(parts.path)
        else:
            path_text = unquote(rest)
        if not path_text or path_text.endswith("/"):
            raise DatabaseConfigError(
                f"--database {_blank_password(raw)!r} names no file; use sqlite:///ABSOLUTE/PATH/registry.sqlite3"
            )
        if path_text.startswith("//"):
            path_text = "/" + path_text.lstrip("/")  # sqlite:////abs/path, SQLAlchemy's form
        path = Path(path_text)
        return DatabaseURL("sqlite", raw, _sqlite_shown(path), sqlite_path=path)
    if scheme in ("postgresql", "postgres"):
        return _postgresql_url(raw)
    raise DatabaseConfigError(
        f"--database {_blank_password(raw)!r}: unknown scheme {scheme!r}; "
        "use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
    )


def _postgresql_url(raw: str) -> DatabaseURL:
    """``postgresql://user[:pw]@host[:port]/db``, shown without its password."""
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise DatabaseConfigError(
            f"--database {_blank_password(raw)!r} is not a valid URL; "
            "use postgresql://USER@HOST:PORT/DB"
        ) from None
    password = unquote(parts.password) if parts.password else None
    database = parts.path.lstrip("/")
    if not database or "/" in database:
        raise DatabaseConfigError(
            f"--database {_blank_password(raw)!r} names no database; "
            "use postgresql://USER@HOST:PORT/DB"
        )
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or ""
    shown_host = f"[{host}]" if ":" in host else host
    netloc = f"{user}{shown_host}" + (f":{port}" if port else "")
    shown = f"postgresql://{netloc}/{database}"
    return DatabaseURL(
        "postgresql",
        raw,
        shown,
        password=password,
        env_password=os.environ.get("PGPASSWORD") or None,
    )


def _sqlite_shown(path: Path) -> str:
    return f"sqlite://{path}" if path.is_absolute() else f"sqlite:{path}"


def _blank_password(raw: str) -> str:
    """``raw`` with whatever sits between ``user:`` and ``@`` replaced by ``***``."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", raw)


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s``; quoted text is left alone but ``%`` doubled."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if char == "%":
            out.append("%%")
        elif quote is not None:
            out.append(char)
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


_PG_DDL = (
    # SQLite's row id: INTEGER PRIMARY KEY, unless the column only points at another table's.
    (
        re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\b(?![^,\n]*\bREFERENCES\b)", re.I),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
)


def pg_ddl(statement: str) -> str:
    """A CREATE/ALTER written for SQLite, in PostgreSQL's types (see the module docstring)."""
    for pattern, replacement in _PG_DDL:
        statement = pattern.sub(replacement, statement)
    return statement


class Connection(abc.ABC):
    """One driver connection, used by one thread at a time."""

    dialect: Dialect
    reused: bool = False
    """Taken from the pool, where it sat idle: the server may have ended it meanwhile."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        """Run one statement written with ``?`` placeholders."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run one statement once per row of parameters (a bulk insert)."""

    @abc.abstractmethod
    def lock(self, *key: object) -> None:
        """Hold a lock on ``key`` until the current transaction ends (writers on it queue)."""

    def ddl(self, statement: str) -> None:
        """Run a CREATE/ALTER written for SQLite, translated for this engine."""
        self.execute(pg_ddl(statement) if self.dialect == "postgresql" else statement)

    def table_exists(self, table: str) -> bool:
        if self.dialect == "sqlite":
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            sql = (
                "SELECT 1 FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_name = ?"
            )
        return self.execute(sql, (table,)).fetchone() is not None

    def tables(self) -> list[str]:
        """The names of every table in the database (the registry's schema)."""
        if self.dialect == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        else:
            sql = (
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            )
        return sorted(str(row[0]) for row in self.execute(sql).fetchall())


class Database(abc.ABC):
    """A pool of connections to one database; safe to share between threads."""

    dialect: Dialect
    pool_size: int | None = None
    """At most this many connections at once (None: one per thread that asks)."""

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url
        self._slots = None if self.pool_size is None else threading.BoundedSemaphore(self.pool_size)
        self._idle: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._all: list[Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False

    @abc.abstractmethod
    def _connect(self) -> Connection: ...

    @abc.abstractmethod
    def _close_one(self, conn: Connection) -> None: ...

    @abc.abstractmethod
    def _usable(self, conn: Connection) -> bool: ...

    def _alive(self, conn: Connection) -> bool:
        """May ``conn``, idle in the pool until now, be handed out? (Checked without a round
        trip to the server: this runs for every request.)"""
        return self._usable(conn)

    @abc.abstractmethod
    def _transaction(
        self, conn: Connection, snapshot: bool
    ) -> contextlib.AbstractContextManager[None]: ...

    def _new(self) -> Connection:
        conn = self._connect()
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection in autocommit mode, back to the pool afterwards.

        For reads: each statement commits on its own, and one that fails because the
        connection broke is not run again (it may have been done). Write in
        :meth:`transaction`.
        """
        if self._closed:
            raise DatabaseError("the database was closed")
        if self._slots is not None and not self._slots.acquire(timeout=POOL_WAIT):
            raise DatabaseBusy(
                f"all {self.pool_size} connections to {self.url} stayed busy for {POOL_WAIT:g} s"
            )
        try:
            with self._pooled() as conn:
                yield conn
        finally:
            if self._slots is not None:
                self._slots.release()

    @contextlib.contextmanager
    def _pooled(self) -> Iterator[Connection]:
        conn: Connection | None = None
        while conn is None:
            try:
                candidate = self._idle.get_nowait()
            except queue.Empty:
                conn = self._new()
                conn.reused = False
                break
            if self._alive(candidate):
                conn = candidate
                conn.reused = True
            else:
                self._discard(candidate)
        try:
            yield conn
        finally:
            if self._usable(conn):
                self._idle.put(conn)
            else:
                self._discard(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        with self.connection() as conn, self._transaction(conn, snapshot=False):
            yield conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only transaction that sees one consistent state (for export)."""
        with self.connection() as conn, self._transaction(conn, snapshot=True):
            yield conn

    def _discard(self, conn: Connection) -> None:
        with self._all_lock:
            if conn in self._all:
                self._all.remove(conn)
        with contextlib.suppress(Exception):
            self._close_one(conn)

    def close(self) -> None:
        """Close every connection; the database must not be used afterwards."""
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):
                self._close_one(conn)


# -- SQLite --------------------------------------------------------------------------------------


_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL = 5, 6, 13


def _sqlite_error(exc: sqlite3.Error, prefix: str = "SQLite: ") -> DatabaseError:
    """The :class:`DatabaseError` a sqlite3 error is."""
    # sqlite_errorcode is new in Python 3.11; the messages are SQLite's own.
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(text)
    if primary == _SQLITE_FULL or "database or disk is full" in text:
        return DatabaseFull(f"{prefix}{text}")
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in text:
        return DatabaseBusy(f"{prefix}{text}")
    return DatabaseError(f"{prefix}{text}")


class _SQLiteConnection(Connection):
    dialect: Dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        try:
            return self.raw.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        try:
            self.raw.executemany(sql, (tuple(row) for row in rows))
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    def lock(self, *key: object) -> None:
        # BEGIN IMMEDIATE already took the database's single write lock.
        return None


class SQLiteDatabase(Database):
    """A SQLite file in WAL mode; write transactions are ``BEGIN IMMEDIATE``."""

    dialect: Dialect = "sqlite"

    def __init__(self, url: DatabaseURL) -> None:
        super().__init__(url)
        assert url.sqlite_path is not None
        self.path = url.sqlite_path

    def _connect(self) -> Connection:
        try:
            # Owner-only when made here, like the data directory it usually sits in.
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create the directory of {self.path}: {exc}") from None
        try:
            _private_file(self.path)
        except OSError as exc:
            raise DatabaseError(f"cannot create {self.path}: {exc}") from None
        try:
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE, so a
            # writer takes the write lock before it reads the numbers it is about to allocate.
            raw = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            raw.execute("PRAGMA journal_mode = WAL")
            raw.execute("PRAGMA synchronous = FULL")
            raw.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise _sqlite_error(exc, f"cannot open {self.path}: ") from exc
        return _SQLiteConnection(raw)

    def _close_one(self, conn: Connection) -> None:
        assert isinstance(conn, _SQLiteConnection)
        conn.raw.close()

    def _usable(self, conn: Connection) -> bool:
        return not self._closed

    @contextlib.contextmanager
    def _transaction(self, conn: Connection, snapshot: bool) -> Iterator[None]:
        assert isinstance(conn, _SQLiteConnection)
        conn.execute("BEGIN" if snapshot else "BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            # Also after a failed COMMIT (a full disk): the pooled connection must not keep
            # a transaction open.
            if conn.raw.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.raw.execute("ROLLBACK")
            raise


def _private_file(path: Path) -> None:
    """Make the database file owner-only (0600) before SQLite opens it, whatever the umask or
    the directory it is in: it lists users, organizations, memberships and private metadata.
    SQLite gives the ``-wal`` and ``-shm`` files it creates the database file's mode; a file
    left broader by an older atlas-ci, and its companions, are narrowed when we own them."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    for companion in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(OSError):  # absent, not ours or read-only: left as it is
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)


# -- PostgreSQL ----------------------------------------------------------------------------------


def _psycopg() -> Any:
    try:
        import psycopg  # an optional extra: only for postgresql:// URLs
    except ImportError:
        raise DatabaseConfigError(
            f"a postgresql:// database needs the psycopg driver: {INSTALL_HINT}"
        ) from None
    return psycopg


def _one_line(text: str, url: DatabaseURL) -> str:
    """A driver's message on one line, without the URL's password."""
    return " ".join(url.scrub(text).split())


def _pg_error(
    exc: Exception, url: DatabaseURL, *, lost: bool = False, committing: bool = False
) -> DatabaseError:
    """The :class:`DatabaseError` a psycopg error is, by its SQLSTATE; credentials cut.

    ``lost``: the connection broke with it (the server ended it, or the network did);
    ``committing``: it was the answer to COMMIT.
    """
    text = f"PostgreSQL: {_one_line(str(exc), url)}"
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    gone = lost or sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")
    if gone and committing:
        # The COMMIT may have been carried out before the answer was lost: not "try again".
        return DatabaseError(
            f"{text} (the connection was lost during COMMIT: the transaction may or may not "
            "have been committed)"
        )
    if gone:  # connection_exception, admin_shutdown, crash_shutdown, cannot_connect_now
        return DatabaseUnavailable(text)
    if sqlstate.startswith("23"):  # integrity_constraint_violation
        return IntegrityError(text)
    if sqlstate == "53100":  # disk_full
        return DatabaseFull(text)
    if sqlstate.startswith("53"):  # out_of_memory, too_many_connections, ...: passing, no disk
        return DatabaseBusy(text)
    if sqlstate in ("55P03", "40P01", "57014"):  # lock_not_available, deadlock, cancelled
        return DatabaseBusy(text)
    return DatabaseError(text)


def _has_input(raw: Any) -> bool:
    """Has the server sent something to this idle connection (or closed it)?

    A healthy idle session is never sent anything (the registry uses no LISTEN); a server
    that shuts down, restarts or ends the session sends its error and closes the socket,
    which makes it readable. A false alarm only costs a new connection.
    """
    try:
        fd = int(raw.fileno())
    except Exception:  # closed
        return True
    if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


class _PostgresConnection(Connection):
    dialect: Dialect = "postgresql"

    def __init__(self, raw: Any, database: PostgresDatabase) -> None:
        self.raw = raw
        self._db = database

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        try:
            # A bool is stored as 0/1, as SQLite does: columns are INTEGER on both engines.
            values = tuple(int(p) if isinstance(p, bool) else p for p in params)
            return self.raw.execute(to_pyformat(sql), values)  # type: ignore[no-any-return]
        except self._db.driver.Error as exc:
            raise self._db.error(exc, self.raw) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        values = (tuple(int(p) if isinstance(p, bool) else p for p in row) for row in rows)
        try:
            with self.raw.cursor() as cursor:
                cursor.executemany(to_pyformat(sql), values)
        except self._db.driver.Error as exc:
            raise self._db.error(exc, self.raw) from None

    def lock(self, *key: object) -> None:
        # Fields joined by a control character, which no name may contain; a hash collision
        # only makes two unrelated writers queue, never lets two writers of one key through.
        text = "\x1f".join(str(part) for part in key)
        self.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (text,))


def _lost(raw: Any) -> bool:
    return bool(raw.closed or raw.broken)


class PostgresDatabase(Database):
    """A PostgreSQL database through psycopg 3; a small pool of autocommit connections."""

    dialect: Dialect = "postgresql"
    pool_size = PG_POOL_SIZE

    def __init__(self, url: DatabaseURL) -> None:
        super().__init__(url)
        self.driver = _psycopg()
        self._reached = False  # connected once: failing to connect now is an outage
        self._unreachable_logged = 0.0
        self._unreachable_since_logged = 0
        self._log_lock = threading.Lock()

    def _connect(self) -> Connection:
        return _PostgresConnection(self._connect_raw(), self)

    def _connect_raw(self) -> Any:
        kwargs: dict[str, object] = {"autocommit": True}
        if "connect_timeout" not in self.url.raw:
            kwargs["connect_timeout"] = 10
        failed: DatabaseError | None = None
        try:
            raw = self.driver.connect(self.url.raw, **kwargs)
        except self.driver.Error as exc:
            failed = self._connect_error(exc)
        if failed is not None:
            # Raised out here, not in the except block: the driver's error must not ride
            # along as __context__ (the repr of its pgconn shows the password).
            raise failed
        try:
            raw.execute(f"SET lock_timeout = {int(PG_LOCK_TIMEOUT_MS)}")
        except self.driver.Error as exc:
            failed = self.error(exc, raw)
            raw.close()
            raise failed from None
        self._reached = True
        return raw

    def _connect_error(self, exc: Exception) -> DatabaseError:
        message = f"cannot connect to {self.url}: {_one_line(str(exc), self.url)}"
        if not self._reached or not isinstance(exc, self.driver.OperationalError):
            # Never connected yet: the server (or command) is starting, and says why it
            # cannot in one line. Or an option of the URL libpq does not accept.
            return DatabaseError(message)
        # It worked before: refused, timed out, starting up, too many clients, even the
        # password or the database refused (libpq gives no SQLSTATE to tell them apart):
        # an outage of the database, in whose time this server can do nothing.
        self._note_unreachable(message)
        return DatabaseUnavailable(message)

    def error(self, exc: Exception, raw: Any, *, committing: bool = False) -> DatabaseError:
        """The :class:`DatabaseError` for ``exc``, raised by a statement on ``raw``."""
        error = _pg_error(exc, self.url, lost=_lost(raw), committing=committing)
        if _lost(raw):
            self._note_unreachable(f"lost a connection to {self.url}: {error}")
        return error

    def _note_unreachable(self, message: str) -> None:
        """Log that the database cannot be reached: at most one line per
        :data:`UNREACHABLE_LOG_EVERY` seconds."""
        with self._log_lock:
            self._unreachable_since_logged += 1
            now = time.monotonic()
            if now - self._unreachable_logged < UNREACHABLE_LOG_EVERY:
                return
            count, self._unreachable_since_logged = self._unreachable_since_logged, 0
            self._unreachable_logged = now
        log.info(
            "database unavailable: %s (%d such failures since the last such line)", message, count
        )

    def _close_one(self, conn: Connection) -> None:
        assert isinstance(conn, _PostgresConnection)
        conn.raw.close()

    def _usable(self, conn: Connection) -> bool:
        assert isinstance(conn, _PostgresConnection)
        return (
            not self._closed
            and not _lost(conn.raw)
            and conn.raw.info.transaction_status == self.driver.pq.TransactionStatus.IDLE
        )

    def _alive(self, conn: Connection) -> bool:
        assert isinstance(conn, _PostgresConnection)
        return self._usable(conn) and not _has_input(conn.raw)

    @contextlib.contextmanager
    def _transaction(self, conn: Connection, snapshot: bool) -> Iterator[None]:
        assert isinstance(conn, _PostgresConnection)
        self._begin(conn)
        try:
            if snapshot:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
            self._commit(conn)
        except BaseException:
            self._rollback(conn)
            raise

    def _begin(self, conn: _PostgresConnection) -> None:
        try:
            conn.raw.execute("BEGIN")
            return
        except self.driver.Error as exc:
            if not (conn.reused and _lost(conn.raw)):
                raise self.error(exc, conn.raw) from None
        # The pooled connection died while it sat idle, after the check that took it from
        # the pool (a restart a moment ago). BEGIN was the first statement sent on it, so
        # nothing of this transaction has run: it runs on a new connection instead.
        with contextlib.suppress(Exception):
            conn.raw.close()
        conn.raw = self._connect_raw()
        conn.reused = False
        conn.execute("BEGIN")

    def _commit(self, conn: _PostgresConnection) -> None:
        if conn.raw.info.transaction_status == self.driver.pq.TransactionStatus.INERROR:
            # A statement failed and its error was caught: PostgreSQL would answer this
            # COMMIT with a silent ROLLBACK, and the caller would believe it committed.
            raise DatabaseError(
                "PostgreSQL: a statement of this transaction failed, so nothing of it was committed"
            )
        try:
            conn.raw.execute("COMMIT")
        except self.driver.Error as exc:
            raise self.error(exc, conn.raw, committing=True) from None

    def _rollback(self, conn: _PostgresConnection) -> None:
        """End the transaction, if the connection still has one (a broken one is dropped by
        the pool, which ends the transaction on the server)."""
        if _lost(conn.raw):
            return
        if conn.raw.info.transaction_status != self.driver.pq.TransactionStatus.IDLE:
            with contextlib.suppress(self.driver.Error):
                conn.raw.execute("ROLLBACK")


def open_database(raw_url: str | None, data_dir: Path) -> Database:
    """The database behind ``--database`` (None: the SQLite file in ``data_dir``)."""
    url = parse_url(raw_url, data_dir)
    if url.dialect == "sqlite":
        return SQLiteDatabase(url)
    return PostgresDatabase(url)
