"""The SQLite layer: pragmas, transactions and migrations (including upgrading an old database)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from conftest import counted_transactions

from server import db as db_module
from server.db import (
    Batched,
    Database,
    Grouped,
    Transaction,
    batch_keys,
    migrate,
    migration_files,
    schema_version,
)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_pragmas_and_latest_version(tmp_path: Path) -> None:
    async def check() -> None:
        async with Database(tmp_path / "a.db") as db:
            applied = await migrate(db)
            assert applied == [n for n, _ in migration_files()]
            assert await schema_version(db) == applied[-1]
            assert await db.fetchval("PRAGMA journal_mode") == "wal"
            assert await db.fetchval("PRAGMA foreign_keys") == 1
            assert await db.fetchval("PRAGMA busy_timeout") == 5000
            assert await migrate(db) == []  # idempotent

    run(check())


def test_upgrade_keeps_data_made_by_an_older_migration_set(tmp_path: Path) -> None:
    path = tmp_path / "old.db"

    async def make_old() -> None:
        async with Database(path) as db:
            assert await migrate(db, target=1) == [1]
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO practitioners (email, name, password_hash, created_at) VALUES ('a@b.c', 'A', 'x', '2026-01-01T00:00:00Z')")
                await tx.execute("INSERT INTO patients (practitioner_id, name, timezone, created_at) VALUES (1, 'P', 'Europe/London', '2026-01-01T00:00:00Z')")

    async def upgrade() -> None:
        async with Database(path) as db:
            applied = await migrate(db)
            assert applied[0] == 2
            row = await db.fetchone("SELECT name, timezone, joined_at FROM patients")
            assert tuple(row) == ("P", "Europe/London", None)
            # Tables of later migrations exist and work.
            await db.execute("INSERT INTO devices (patient_id, token_hash, created_at, last_seen_at) VALUES (1, x'00', 't', 't')")

    run(make_old())
    run(upgrade())


def test_failed_migration_rolls_back_and_keeps_version(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_one.sql").write_text("CREATE TABLE a (x INTEGER);")
    (folder / "0002_two.sql").write_text("CREATE TABLE b (x INTEGER);\nINSERT INTO nope VALUES (1);")

    async def check() -> None:
        async with Database(tmp_path / "m.db") as db:
            with pytest.raises(sqlite3.OperationalError):
                await migrate(db, directory=folder)
            assert await schema_version(db) == 1
            assert await db.fetchone("SELECT name FROM sqlite_master WHERE name = 'b'") is None

    run(check())


def test_migration_files_must_be_in_sequence(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0003_c.sql").write_text("")
    with pytest.raises(RuntimeError, match="out of sequence"):
        migration_files(tmp_path)


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    async def check() -> None:
        async with Database(tmp_path / "t.db") as db:
            await migrate(db)
            with pytest.raises(RuntimeError):
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO rate_events (key, at) VALUES ('k', 't')")
                    raise RuntimeError("boom")
            assert await db.fetchval("SELECT count(*) FROM rate_events") == 0

    run(check())


def test_concurrent_writers_in_one_process_do_not_interleave(tmp_path: Path) -> None:
    async def check() -> None:
        async with Database(tmp_path / "c.db") as db:
            await migrate(db)

            async def writer(n: int) -> None:
                async with db.transaction() as tx:
                    count = await tx.fetchval("SELECT count(*) FROM rate_events")
                    await asyncio.sleep(0)
                    await tx.execute("INSERT INTO rate_events (key, at) VALUES (?, ?)", (f"k{count}", str(n)))

            await asyncio.gather(*(writer(n) for n in range(50)))
            keys = [r[0] for r in await db.fetchall("SELECT key FROM rate_events")]
            assert sorted(keys) == sorted(f"k{n}" for n in range(50))  # each saw the one before it

    run(check())


def test_a_write_cancelled_while_its_begin_is_at_the_database_leaves_no_transaction_open(tmp_path: Path) -> None:
    async def check() -> None:
        async with Database(tmp_path / "c.db") as db:
            await db.execute("CREATE TABLE t (n INTEGER)")
            task = asyncio.ensure_future(db.execute("INSERT INTO t VALUES (1)"))
            await asyncio.sleep(0)  # the task now waits for its BEGIN IMMEDIATE
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await db.execute("INSERT INTO t VALUES (2)") == 1  # not "cannot start a transaction within a transaction"
            assert [r[0] for r in await db.fetchall("SELECT n FROM t")] == [2]

    run(check())


def test_backup_while_open(tmp_path: Path) -> None:
    async def check() -> None:
        async with Database(tmp_path / "live.db") as db:
            await migrate(db)
            await db.execute("INSERT INTO rate_events (key, at) VALUES ('k', 't')")
            await db.backup(tmp_path / "copy.db")
        conn = sqlite3.connect(tmp_path / "copy.db")
        assert conn.execute("SELECT count(*) FROM rate_events").fetchone()[0] == 1

    run(check())


# --- Batched: concurrent point reads in one query ------------------------------------------


def _squares(n: int) -> str:
    return f"SELECT n, n * n + :plus AS square FROM numbers WHERE n IN ({batch_keys(n)})"


def _by_n(rows: list[sqlite3.Row]) -> dict[int, int]:
    return {row["n"]: row["square"] for row in rows}


@asynccontextmanager
async def _numbers(path: Path) -> AsyncIterator[Database]:
    # Closed even when an assertion fails: an open aiosqlite thread would keep pytest from exiting.
    async with Database(path) as db:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE numbers (n INTEGER PRIMARY KEY)")
            await tx.executemany("INSERT INTO numbers VALUES (?)", [(n,) for n in range(200)])
        yield db


class _Counting:
    """Reads through a database and keeps each statement's number of keys."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.batches: list[int] = []

    async def fetchall(self, sql: str, params: dict[str, object]) -> list[sqlite3.Row]:
        self.batches.append(sum(name.startswith("k") for name in params))
        return await self.db.fetchall(sql, params)


async def _cancel_at_the_database(owner: Batched | Grouped, waiters: list[asyncio.Future[object]]) -> None:
    """Cancel owner's task once its batch is at the database; every waiter must end cancelled."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert owner._running is not None
    owner._running.cancel()
    results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 5)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results


def test_batched_reads_of_one_turn_go_as_one_query_and_each_gets_its_own_answer(tmp_path: Path) -> None:
    async def check() -> None:
        async with _numbers(tmp_path / "n.db") as db:
            reads = _Counting(db)
            batched = Batched(reads, _squares, _by_n)  # type: ignore[arg-type]
            plus = (("plus", 1),)
            keys = [3, 7, 7, 150, 999, 0]
            answers = await asyncio.gather(*(batched.fetch(plus, k) for k in keys))
            assert answers == [10, 50, 50, 22501, None, 1]  # a key asked twice is read once; 999 is not there
            assert reads.batches == [5]
            # Other parameters make another batch.
            answers = await asyncio.gather(batched.fetch(plus, 2), batched.fetch((("plus", 0),), 2))
            assert answers == [5, 4]
            assert reads.batches == [5, 1, 1]

    run(check())


def test_batched_newcomers_gather_while_a_batch_is_at_the_database(tmp_path: Path) -> None:
    async def check() -> None:
        async with _numbers(tmp_path / "n.db") as db:
            reads = _Counting(db)
            batched = Batched(reads, _squares, _by_n, limit=4)  # type: ignore[arg-type]
            plus = (("plus", 0),)

            async def later(k: int, turns: int) -> int:
                for _ in range(turns):
                    await asyncio.sleep(0)
                return await batched.fetch(plus, k)  # type: ignore[no-any-return]

            # Two come in the first turn; the rest arrive while that batch is out and go
            # together next, at most four keys a statement.
            answers = await asyncio.gather(later(1, 0), later(2, 0), *(later(k, 2) for k in range(10, 16)))
            assert answers == [1, 4, 100, 121, 144, 169, 196, 225]
            assert reads.batches == [2, 4, 2]

    run(check())


def test_batched_failure_reaches_every_waiter_and_the_next_batch_still_runs(tmp_path: Path) -> None:
    async def check() -> None:
        async with _numbers(tmp_path / "n.db") as db:
            batched = Batched(db, _squares, _by_n)
            bad = (("nope", 1),)  # :plus is missing: sqlite3 refuses the statement
            results = await asyncio.gather(batched.fetch(bad, 1), batched.fetch(bad, 2), return_exceptions=True)
            assert all(isinstance(r, sqlite3.ProgrammingError) for r in results), results
            assert await batched.fetch((("plus", 0),), 9) == 81
            # A waiter cancelled before its batch answers does not disturb the others.
            waiters = [asyncio.ensure_future(batched.fetch((("plus", 0),), k)) for k in (4, 5)]
            await asyncio.sleep(0)
            waiters[0].cancel()
            assert await waiters[1] == 25
            assert waiters[0].cancelled()
            # The batch itself cancelled (the loop shutting down): its waiters are cancelled too.
            await _cancel_at_the_database(batched, [asyncio.ensure_future(batched.fetch((("plus", 0),), k)) for k in (6, 7)])
            assert await batched.fetch((("plus", 0),), 8) == 64  # and the next request starts afresh
            # Cancelled with more queued behind the batch at the database (over the limit, or
            # another day's window): none of them is left waiting either.
            small = Batched(db, _squares, _by_n, limit=2)
            await _cancel_at_the_database(
                small, [asyncio.ensure_future(small.fetch((("plus", p),), k)) for p in (0, 1) for k in (1, 2, 3)]
            )

    run(check())


# --- Grouped: concurrent writes in one transaction ----------------------------------------


class _Inserts:
    """A write for Grouped: inserts each number; an odd one is refused (its outcome is an error)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, tx: Transaction, items: list[int]) -> list[object]:
        self.batches.append(list(items))
        await tx.executemany("INSERT INTO numbers VALUES (?)", [(n,) for n in items if n % 2 == 0])
        return [ValueError(f"odd {n}") if n % 2 else n * 10 for n in items]


async def _committed(db: Database, n: int) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM numbers WHERE n = ?", (n,)))  # the reader sees commits only


def test_grouped_writes_of_one_turn_share_one_transaction_and_each_gets_its_own_outcome(tmp_path: Path) -> None:
    async def check() -> None:
        async with _numbers(tmp_path / "n.db") as db:
            write = _Inserts()
            grouped = Grouped(db, write, limit=3)

            async def submit(n: int) -> object:
                outcome = await grouped.submit(n)
                assert await _committed(db, n), n  # nobody hears of a write before its COMMIT
                return outcome

            outcomes = await asyncio.gather(*(submit(n) for n in (200, 201, 202, 204, 206)), return_exceptions=True)
            assert outcomes[0] == 2000 and outcomes[2:] == [2020, 2040, 2060]
            assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "odd 201"  # to its own caller only
            assert write.batches == [[200, 201, 202], [204, 206]]

    run(check())


def test_grouped_batch_that_fails_as_a_whole_is_retried_one_transaction_each(tmp_path: Path) -> None:
    async def check() -> None:
        async with _numbers(tmp_path / "n.db") as db:
            write = _Inserts()
            grouped = Grouped(db, write)
            # 4 is there already: the batch's INSERT fails and rolls back; alone, only 4 fails.
            outcomes = await asyncio.gather(*(grouped.submit(n) for n in (300, 4, 302)), return_exceptions=True)
            assert outcomes[0] == 3000 and outcomes[2] == 3020
            assert isinstance(outcomes[1], sqlite3.IntegrityError)
            assert write.batches == [[300, 4, 302], [300], [4], [302]]
            assert await _committed(db, 300) and await _committed(db, 302)

    run(check())


def test_grouped_cancellation(tmp_path: Path) -> None:
    async def check() -> None:
        async with _numbers(tmp_path / "n.db") as db:
            grouped = Grouped(db, _Inserts(), limit=2)
            # A caller who stops waiting does not undo its write: a retry will find it.
            waiters = [asyncio.ensure_future(grouped.submit(n)) for n in (400, 402)]
            await asyncio.sleep(0)
            waiters[0].cancel()
            assert await waiters[1] == 4020
            assert waiters[0].cancelled() and await _committed(db, 400)
            # The task cancelled with a batch at the database and more queued behind it: the batch
            # rolls back and every caller is cancelled, none told "saved", none left waiting.
            await _cancel_at_the_database(grouped, [asyncio.ensure_future(grouped.submit(n)) for n in (410, 412, 414)])
            assert not any([await _committed(db, n) for n in (410, 412)])  # the batch that was at the database
            assert await grouped.submit(416) == 4160  # and the next write starts afresh

    run(check())


def test_grouped_cancelled_while_retrying_one_by_one_leaves_nobody_waiting(tmp_path: Path) -> None:
    async def check() -> None:
        async with _numbers(tmp_path / "n.db") as db:
            retrying = asyncio.Event()

            async def write(tx: Transaction, items: list[int]) -> list[object]:
                if items == [302]:
                    retrying.set()
                    await asyncio.sleep(3600)  # cancelled here, with 304 still to retry
                await tx.executemany("INSERT INTO numbers VALUES (?)", [(n,) for n in items])
                return [n * 10 for n in items]

            grouped = Grouped(db, write)
            waiters = [asyncio.ensure_future(grouped.submit(n)) for n in (300, 4, 302, 304)]  # 4 is there already
            await asyncio.wait_for(retrying.wait(), 5)
            assert grouped._running is not None
            grouped._running.cancel()
            results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 5)
            assert results[0] == 3000 and isinstance(results[1], sqlite3.IntegrityError)
            assert all(isinstance(r, asyncio.CancelledError) for r in results[2:]), results

    run(check())


def test_grouped_and_batched_recover_from_a_task_cancelled_before_it_ran(tmp_path: Path) -> None:
    async def check() -> None:
        async with _numbers(tmp_path / "n.db") as db:
            grouped, batched = Grouped(db, _Inserts()), Batched(db, _squares, _by_n)
            first = asyncio.ensure_future(grouped.submit(500))
            read = asyncio.ensure_future(batched.fetch((("plus", 0),), 3))
            await asyncio.sleep(0)  # each has started its task, which has not run yet
            assert grouped._running is not None and batched._running is not None
            grouped._running.cancel()
            batched._running.cancel()
            await asyncio.sleep(0)
            # The next caller starts a new task, which also serves the one queued before.
            assert await asyncio.wait_for(grouped.submit(502), 5) == 5020
            assert await asyncio.wait_for(first, 5) == 5000
            assert await asyncio.wait_for(batched.fetch((("plus", 0),), 4), 5) == 16
            assert await asyncio.wait_for(read, 5) == 9

    run(check())


def test_grouped_items_that_cannot_begin_all_get_that_error_without_a_retry_each(tmp_path: Path) -> None:
    async def check() -> None:
        async with _numbers(tmp_path / "n.db") as db:
            await db._writer.execute("PRAGMA busy_timeout=50")  # type: ignore[union-attr]
            write = _Inserts()
            grouped = Grouped(db, write)
            other = sqlite3.connect(tmp_path / "n.db", isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
                with counted_transactions(db) as tries:
                    results = await asyncio.gather(*(grouped.submit(n) for n in (600, 602, 604)), return_exceptions=True)
            finally:
                other.close()
            assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
            assert write.batches == [] and len(tries) == 1  # one wait for the lock, not one per item
            assert await grouped.submit(606) == 6060

    run(check())


def test_a_commit_that_fails_is_rolled_back_and_later_writes_go_on(tmp_path: Path) -> None:
    async def check() -> None:
        async with Database(tmp_path / "f.db") as db:
            await db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            await db.execute(
                "CREATE TABLE child (parent_id INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
            )
            with pytest.raises(sqlite3.IntegrityError):
                await db.execute("INSERT INTO child VALUES (7)")  # refused only at COMMIT
            assert await db.execute("INSERT INTO parent VALUES (7)") == 1  # not "within a transaction"
            assert await db.fetchval("SELECT count(*) FROM child") == 0

    run(check())


def test_the_app_keeps_the_garbage_collector_out_of_the_way_while_it_serves(tmp_path: Path) -> None:
    import gc

    from starlette.testclient import TestClient

    from server.app import create_app
    from server.config import Settings

    app = create_app(Settings(db_path=tmp_path / "a.db", data_dir=tmp_path, secret_key="k" * 32, scheduler=False))
    before, thresholds = gc.get_freeze_count(), gc.get_threshold()
    with TestClient(app):
        assert gc.get_freeze_count() > before + 10_000  # modules, routes, the exercise library...
        assert gc.get_threshold()[0] == 20_000  # young collections far apart
    # Handed back on shutdown, so a process making many apps never leaks them.
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds
    # Two apps whose lives overlap, the first stopping first: the defaults come back with the last.
    other = create_app(Settings(db_path=tmp_path / "b.db", data_dir=tmp_path, secret_key="k" * 32, scheduler=False))
    first = TestClient(app)
    first.__enter__()
    with TestClient(other):
        first.__exit__(None, None, None)
        assert gc.get_threshold()[0] == 20_000 and gc.get_freeze_count() > 0
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


# --- the background checkpointer ----------------------------------------------------------


def in_database_file(path: Path, sql: str) -> object:
    """A value read from the database file alone, ignoring the WAL: what has been checkpointed
    (None while the table is still only in the WAL, or while a checkpoint is writing the file)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return conn.execute(sql).fetchone()[0]
    except sqlite3.DatabaseError:  # no such table yet, or a page caught half-written
        return None
    finally:
        conn.close()


async def eventually(check, seconds: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def count_checkpoints(db: Database, monkeypatch: pytest.MonkeyPatch, fail_first: int = 0) -> list[str]:
    """Record each statement the checkpointer runs; the first fail_first of them fail."""
    conn = db._checkpointer
    assert conn is not None
    calls: list[str] = []
    real = conn.execute

    async def execute(sql: str, *args: object) -> object:
        calls.append(sql)
        if len(calls) <= fail_first:
            raise sqlite3.OperationalError("disk I/O error")
        return await real(sql, *args)

    monkeypatch.setattr(conn, "execute", execute)
    return calls


def test_writes_reach_the_database_file_soon_without_waiting_for_the_automatic_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.db"
    rest = 0.3  # longer than the default: 20 writes must fit in a few rests even on a loaded machine
    monkeypatch.setattr(db_module, "CHECKPOINT_REST", rest)

    async def check() -> None:
        async with Database(path) as db:
            calls = count_checkpoints(db, monkeypatch)
            await asyncio.sleep(0.2)
            assert calls == []  # nothing written, nothing to do
            await db.execute("CREATE TABLE t (x)")
            await db.execute("INSERT INTO t VALUES (1)")
            # Far below the automatic checkpoint's 1,000 pages: only the checkpointer copies it.
            await eventually(lambda: in_database_file(path, "SELECT count(*) FROM t") == 1)
            assert calls and set(calls) == {"PRAGMA wal_checkpoint(PASSIVE)"}
            before, started = len(calls), asyncio.get_running_loop().time()
            for i in range(20):  # a burst of writes: a checkpoint at most every rest
                await db.execute("INSERT INTO t VALUES (?)", (i,))
            took = asyncio.get_running_loop().time() - started
            await eventually(lambda: in_database_file(path, "SELECT count(*) FROM t") == 21)
            assert len(calls) - before <= took / rest + 2 < 20
            assert await db.fetchval("PRAGMA wal_autocheckpoint") == 1000  # still the safety net

    run(check())


def test_a_failed_background_checkpoint_is_logged_and_tried_again_after_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "e.db"

    async def check() -> None:
        async with Database(path) as db:
            calls = count_checkpoints(db, monkeypatch, fail_first=1)
            await db.execute("CREATE TABLE t (x)")
            await eventually(lambda: len(calls) == 1)
            await asyncio.sleep(0.1)
            assert in_database_file(path, "SELECT count(*) FROM t") is None  # that one failed
            await db.execute("INSERT INTO t VALUES ('secret')")
            await eventually(lambda: in_database_file(path, "SELECT count(*) FROM t") == 1)
        assert "background checkpoint failed: disk I/O error" in caplog.text
        assert "secret" not in caplog.text

    run(check())
