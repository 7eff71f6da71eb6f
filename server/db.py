"""The only module that talks to aiosqlite: connections, transactions and migrations.

Each process keeps two long-lived connections, never one per request (measured in
bench/: a connection per request is several times slower). Reads go to the reader;
every write goes through the writer, serialised by an asyncio lock and wrapped in
BEGIN IMMEDIATE, so statements of two requests never interleave in one transaction and
a reader never sees a write that may still roll back. Across processes SQLite's own
locking (WAL, busy timeout) does the serialising. A third connection copies committed
pages from the WAL into the database file after writes, off the writer's path.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import sqlite3
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# After a write, the checkpointer copies the WAL into the database file, then rests this
# long before the next: under steady writes, a checkpoint every 50 ms.
CHECKPOINT_REST = 0.05
Row = sqlite3.Row
Params = Sequence[Any] | dict[str, Any]

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # NORMAL in WAL mode survives a process crash; only a power loss can drop the last commits.
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)


class _Reads:
    """Read helpers over whichever connection the subclass names."""

    _conn: aiosqlite.Connection

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query and return every row (one hop to the connection's thread)."""
        return list(await self._conn.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self._conn.execute_fetchall(sql, params)
        return rows[0] if rows else None  # type: ignore[index]

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    async def fetch_json(self, sql: str, params: Params = ()) -> Any:
        """Run a query whose one value is JSON (json_group_array, ...) and return it parsed.

        For reads of thousands of rows while the event loop is busy: sqlite3 lets go of the
        GIL around every row it steps to and must win it back from the loop each time, so
        2,500 rows took 340-430 ms against 100 ms as one JSON value (15 and 22 ms with an
        idle loop). json_group_array gives "[]", never NULL, for no rows.
        """
        return orjson.loads(await self.fetchval(sql, params))


class _Drained:
    """Work queued by callers and drained by one task at a time (Batched, Grouped).

    The first caller to find no task running (none yet, or the last one done: drained,
    failed or cancelled, even before its first step) starts one, which also serves what
    was queued before. It first runs after the loop's current turn, when that turn's
    callers have queued too, and it ends when the queue is empty.
    """

    _running: asyncio.Task[None] | None = None

    def _queued(self) -> asyncio.Future[Any]:
        """A future for the caller's answer, with a task on its way to drain the queue."""
        loop = asyncio.get_running_loop()
        if self._running is None or self._running.done():
            self._running = loop.create_task(self._run())
        return loop.create_future()

    async def _run(self) -> None:
        raise NotImplementedError


def batch_keys(n: int) -> str:
    """The placeholders of a Batched statement's n keys: ":k0, :k1, ..."."""
    return ", ".join(f":k{i}" for i in range(n))


class Batched(_Drained):
    """One query for the same point read made by concurrent requests.

    Each query sent to aiosqlite hops to the connection's thread and back; under load that
    hop, and the handing of the GIL back and forth for every row, cost more than SQLite
    spends on a small indexed read (bench/README.md). So the requests of one turn of the
    event loop go together: the first waits for the loop to finish its turn, then their
    keys are read in one statement; while that batch is at the database, newcomers gather
    for the next. A lone request waits for nothing but its own turn.

    `sql(n)` is the statement for n keys, bound as :k0 ... :k{n-1} (batch_keys) next to the batch's named
    parameters; `split(rows)` maps each key found to its answer (a key not there gets
    None). Requests whose parameters differ go in separate batches, so the parameters
    should change rarely (once a day, say).
    """

    def __init__(
        self, reads: _Reads, sql: Callable[[int], str], split: Callable[[list[Row]], Mapping[Hashable, Any]],
        limit: int = 64,
    ) -> None:
        self._reads = reads
        self._sql = lru_cache(maxsize=limit)(sql)
        self._split = split
        self._limit = limit
        self._waiting: dict[tuple[Any, ...], dict[Hashable, list[asyncio.Future[Any]]]] = {}

    async def fetch(self, params: tuple[tuple[str, Any], ...], key: Hashable) -> Any:
        """The answer for key, read with the named parameters params ((name, value) pairs)."""
        future = self._queued()
        self._waiting.setdefault(params, {}).setdefault(key, []).append(future)
        return await future

    async def _run(self) -> None:
        try:
            while self._waiting:
                params = next(iter(self._waiting))
                keys = self._waiting[params]
                batch = dict(itertools.islice(keys.items(), self._limit))
                for key in batch:
                    del keys[key]
                if not keys:
                    del self._waiting[params]
                await self._answer(params, batch)
        except BaseException:  # cancelled: the requests still queued must not wait for a task that is gone
            for keys in self._waiting.values():
                for futures in keys.values():
                    for future in futures:
                        future.cancel()
            self._waiting.clear()
            raise

    async def _answer(self, params: tuple[tuple[str, Any], ...], batch: dict[Hashable, list[asyncio.Future[Any]]]) -> None:
        values = dict(params)
        values.update((f"k{i}", key) for i, key in enumerate(batch))
        try:
            found = self._split(await self._reads.fetchall(self._sql(len(batch)), values))
        except Exception as error:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            return
        except BaseException:  # cancelled (the loop shutting down): never leave a request waiting
            for futures in batch.values():
                for future in futures:
                    future.cancel()
            raise
        for key, futures in batch.items():
            for future in futures:
                if not future.done():  # a request cancelled while it waited
                    future.set_result(found.get(key))


class Grouped(_Drained):
    """One write transaction for the same kind of write made by concurrent requests (group commit).

    A write transaction is several hops to the writer's thread (BEGIN, reads, writes, COMMIT)
    under one lock, so concurrent writers queued for it one whole transaction at a time.
    Here the writes that arrive while a transaction runs wait for the next one together:
    `write(tx, items)` runs inside it and returns one outcome per item, in order; an
    outcome that is an exception is raised to that item's caller only. No caller hears of
    its write before COMMIT has returned. If the transaction fails as a whole, each item is
    tried again in a transaction of its own, so one item never costs another its write
    (unless the transaction could not even begin: then each gets that error). A caller who
    stops waiting does not take its item back.
    """

    def __init__(self, db: Database, write: Callable[[Transaction, list[Any]], Awaitable[list[Any]]], limit: int = 256) -> None:
        self._db = db
        self._write = write
        self._limit = limit
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []

    async def submit(self, item: Any) -> Any:
        """Write item with the others waiting; its outcome once committed."""
        future = self._queued()
        self._queue.append((item, future))
        return await future

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._limit], self._queue[self._limit :]
                await self._commit(batch)
        except BaseException:  # cancelled: nobody still queued may wait for a task that is gone
            for _, future in self._queue:
                future.cancel()
            self._queue.clear()
            raise

    async def _commit(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        began = False
        try:
            try:
                async with self._db.transaction() as tx:
                    began = True
                    outcomes = await self._write(tx, [item for item, _ in batch])
                    if len(outcomes) != len(batch):
                        raise RuntimeError(f"{self._write!r} gave {len(outcomes)} outcomes for {len(batch)} items")
            except Exception as error:  # noqa: BLE001 (any failure: its items are retried or told)
                if not began or len(batch) == 1:  # BEGIN failed (busy past the timeout): alone would too
                    outcomes = [error] * len(batch)
                else:
                    for one in batch:
                        await self._commit([one])
                    return
        except BaseException:  # cancelled (the loop shutting down): nobody hears "saved" (a retry finds it if it was)
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), outcome in zip(batch, outcomes):
            if future.done():  # its caller gave up waiting; the write stands, and a retry finds it
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


class Transaction(_Reads):
    """Statements run on the writer inside one BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement and return the number of rows it changed."""
        cursor = await self._conn.execute(sql, params)
        count = cursor.rowcount
        await cursor.close()
        return count

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._conn.executemany(sql, rows)


class Database(_Reads):
    """A reader and a writer connection to one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._reader: aiosqlite.Connection | None = None
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._batched: dict[tuple[Callable[..., Any], Callable[..., Any]], Batched] = {}
        self._grouped: dict[Callable[..., Any], Grouped] = {}
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._written: asyncio.Event | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await _connect(self.path)
        self._reader = await _connect(self.path)
        self._checkpointer = await _connect(self.path)
        self._written = asyncio.Event()
        self._checkpoints = asyncio.get_running_loop().create_task(
            _checkpoint_after_writes(self._checkpointer, self._written)
        )

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            await asyncio.gather(self._checkpoints, return_exceptions=True)
            self._checkpoints = None
        for conn in (self._reader, self._writer, self._checkpointer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = self._checkpointer = None

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def reader(self) -> aiosqlite.Connection:
        # Reads outside a transaction go to the reader, which sees only committed data.
        assert self._reader is not None, "database is not open"
        return self._reader

    @property
    def _conn(self) -> aiosqlite.Connection:  # type: ignore[override]
        return self.reader

    def batched(self, sql: Callable[[int], str], split: Callable[[list[Row]], Mapping[Hashable, Any]]) -> Batched:
        """The reader's Batched for a family of statements and its split (one per database, made on first use)."""
        found = self._batched.get((sql, split))
        if found is None:
            found = self._batched[sql, split] = Batched(self, sql, split)
        return found

    def grouped(self, write: Callable[[Transaction, list[Any]], Awaitable[list[Any]]]) -> Grouped:
        """The writer's Grouped for one kind of write (one per database, made on first use)."""
        found = self._grouped.get(write)
        if found is None:
            found = self._grouped[write] = Grouped(self, write)
        return found

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Run the block's statements as one write transaction, rolled back on error."""
        assert self._writer is not None and self._written is not None, "database is not open"
        async with self._write_lock:
            # BEGIN and COMMIT inside the try: cancelled while either is at the thread, it still
            # runs there, and a failed COMMIT stays open; a transaction left open would refuse
            # every later write. The rollback queues behind them (sqlite3 rolls back only what
            # is still open, so after a COMMIT that went through it does nothing).
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
                yield Transaction(self._writer)
                await self._writer.commit()
                self._written.set()  # the checkpointer's cue
            except BaseException:
                await self._writer.rollback()
                raise

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write statement in its own transaction; return the rows changed."""
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def write_fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """Run one write statement with RETURNING in its own transaction."""
        async with self.transaction() as tx:
            return await tx.fetchone(sql, params)

    async def backup(self, target: Path) -> None:
        """Copy the database to target with SQLite's online backup (safe while serving)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        dest = await aiosqlite.connect(target)
        try:
            await self._conn.backup(dest)
        finally:
            await dest.close()


async def _checkpoint_after_writes(conn: aiosqlite.Connection, written: asyncio.Event) -> None:
    """After each write (at most every CHECKPOINT_REST s), copy the WAL into the database file.

    SQLite's automatic checkpoint does this inside the COMMIT that takes the WAL past
    1,000 pages: under steady writes a stall of several ms every few hundred
    completions, felt by every request waiting for that COMMIT (most of the POST's p99
    in bench/). Done here on a connection of its own, PASSIVE (it never waits for the
    writer, nor holds it up), the WAL rarely gets there; the automatic checkpoint stays
    on and still bounds the WAL if this one falls behind. Nothing written, no work.
    """
    while True:
        await written.wait()
        written.clear()
        try:
            await conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as error:  # the automatic checkpoint still runs; try again after the next write
            log.warning("background checkpoint failed: %s", error)
        await asyncio.sleep(CHECKPOINT_REST)


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves instead of sqlite3's implicit ones.
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in _PRAGMAS:
        await conn.execute(pragma)
    return conn


# --- migrations ---------------------------------------------------------------------------

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """List the numbered migration files in order, refusing gaps."""
    found = []
    for path in directory.iterdir():
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    found.sort()
    for expected, (number, path) in enumerate(found, start=1):
        if number != expected:
            raise RuntimeError(f"migration {path.name} is out of sequence (expected {expected:04d})")
    return found


async def migrate(db: Database, *, target: int | None = None, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply the migrations newer than PRAGMA user_version, each in its own transaction."""
    applied = []
    async with db._write_lock:
        conn = db._writer
        assert conn is not None, "database is not open"
        for number, path in migration_files(directory):
            if target is not None and number > target:
                break
            current = (await (await conn.execute("PRAGMA user_version")).fetchone())[0]  # type: ignore[index]
            if number <= current:
                continue
            script = path.read_text()
            try:
                # executescript commits first; the script's own BEGIN/COMMIT keep it atomic.
                await conn.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
                )
            except sqlite3.Error:
                if conn.in_transaction:
                    await conn.rollback()
                raise
            applied.append(number)
    return applied


async def schema_version(db: Database) -> int:
    return int(await db.fetchval("PRAGMA user_version"))
