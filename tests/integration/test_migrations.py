"""Upgrades and downgrades of the schema, as package upgrades meet them (issue 16): a database
that a previous gangliond left behind gets the pending migrations at start-up, before the server
listens, and keeps its data; a database that a newer gangliond migrated (a migration this binary
does not know) makes `serve` and `migrate` refuse with a message that says what to do."""

import hashlib

import pytest

from ganglion_harness import GANGLIOND, SRCDIR, ServerError, run

MIGRATIONS = sorted((SRCDIR / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))


def _embedded(path):
    """The text gangliond embeds for a migration file (scripts/embed-migrations.sh: every line
    ends with a newline), and so the checksum it records."""
    text = path.read_text()
    return text if text.endswith("\n") else text + "\n"


def _apply_as_release(pg, db, migrations):
    """Leaves db as the release that carried only these migrations would: applied and recorded
    (the same table and checksums as server/migrate.c)."""
    pg.sql("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
           "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())", db)
    for m in migrations:
        sql = _embedded(m)
        pg.psql(sql, db)
        version = int(m.name.split("_")[0])
        pg.sql(f"INSERT INTO schema_migrations (version, name, checksum) VALUES "
               f"({version}, '{m.stem}', '{hashlib.sha256(sql.encode()).hexdigest()}')", db)


def test_pending_migrations_run_before_the_server_listens(pg, db, gangliond):
    assert len(MIGRATIONS) >= 2, MIGRATIONS
    old, new = MIGRATIONS[:-1], MIGRATIONS[-1]
    _apply_as_release(pg, db, old)
    # Data the previous release wrote: an audit row survives the upgrade.
    pg.sql("INSERT INTO audit_log (actor, action, object_type) VALUES ('operator', 'before.upgrade', 'test')", db)
    s = gangliond()
    log = s.log().splitlines()
    applied = [i for i, line in enumerate(log) if "event=migration_applied" in line]
    assert [log[i].split("name=")[1].split()[0] for i in applied] == [new.stem], s.log()
    listening = next(i for i, line in enumerate(log) if "event=listening" in line)
    assert applied[-1] < listening, s.log()
    assert pg.sql("SELECT max(version) FROM schema_migrations", db) == str(int(new.name.split("_")[0]))
    assert pg.sql("SELECT count(*) FROM audit_log WHERE action = 'before.upgrade'", db) == "1"
    assert s.api("GET", "/readyz").status_code == 200


def test_a_migration_from_a_newer_gangliond_refuses_serve_and_migrate(pg, db, gangliond, workdir):
    s = gangliond()
    s.stop()
    pg.sql("INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, '9999_from_the_future', 'x')", db)
    want = ("the database was migrated by a newer gangliond: it has migration 9999_from_the_future, which this "
            "gangliond")
    with pytest.raises(ServerError) as e:
        gangliond()
    assert want in str(e.value) and "does not know" in str(e.value) and "Downgrading is not supported" in str(e.value)
    assert "event=listening" not in str(e.value)
    cmd = [GANGLIOND, "--data-dir", workdir / "migrate", "--database-url", pg.dsn(db), "migrate"]
    p = run(cmd, check=False, timeout=120)
    assert p.returncode == 1 and want in p.stderr, p.stderr
    # Nothing was applied or changed by the refusals; without the row it serves again.
    assert pg.sql("SELECT count(*) FROM schema_migrations WHERE version < 9999", db) == str(len(MIGRATIONS))
    pg.sql("DELETE FROM schema_migrations WHERE version = 9999", db)
    gangliond()
