"""merge_ingest: copy new or changed MERGE files to object storage and upsert `tracks` rows.

Content decides what is new: every file is identified by its SHA-256, stored under a
content-addressed key, and a track whose metadata and hashes are unchanged is not written.
A rerun over an unchanged landing zone uploads nothing and writes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa

from musicvae.core import db, lineage
from musicvae.core.config import Settings, shard_size
from musicvae.core.errors import CatalogueError
from musicvae.core.shards import discard, inputs, ordered, output_key, run_prefix, split
from musicvae.core.storage import ObjectStore, content_key, sha256_bytes
from musicvae.ingest.landing import FileStat, Landing
from musicvae.ingest.merge import Listing, Rejection, TrackEntry

log = logging.getLogger("musicvae.ingest.run")
# A shard's files are hashed and uploaded by this many threads: each file costs two S3 round
# trips that mostly wait on the server (1500 files took 5.6 s one at a time on 2 cores).
UPLOAD_THREADS = 8
# Whether a cached file's object is still stored: one listing of `raw/` returned 11,500 keys/s
# and existence requests 1,000/s in any number of threads (2 cores, the local S3 server). A shard
# lists the store while it holds at most this many objects per file of the shard, and asks per
# file beyond that, so a rerun costs neither a request per file on a small catalogue nor a
# listing of a large one per shard.
LIST_OBJECTS_PER_FILE = 10


@dataclass
class IngestResult:
    run_id: str
    landing: str
    files_seen: int = 0
    files_uploaded: int = 0
    tracks_new: int = 0
    tracks_changed: int = 0
    tracks_unchanged: int = 0
    quarantined: int = 0
    rejected: int = 0
    rejections_changed: bool = False
    rejections: list[dict] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.tracks_new or self.tracks_changed or self.rejections_changed)

    def as_dict(self) -> dict:
        return {**asdict(self), "changed": self.changed}


@dataclass
class _StoredFile:
    sha256: str
    key: str | None
    size: int


class _FileStore:
    """Hashes landing files (skipping those whose size and mtime are cached) and uploads them;
    `put` may be called from several threads."""

    def __init__(
        self, landing: Landing, store: ObjectStore, stats: dict, cache: dict, listed: set | None
    ):
        self.landing, self.store, self.stats, self.cache = landing, store, stats, cache
        self.listed = listed  # the stored raw objects' keys, or None to ask per file
        self.uploaded = 0
        self.cache_updates: dict[str, tuple[int, int, str]] = {}
        self._lock = threading.Lock()

    def put(self, rel: str, prefix: str) -> _StoredFile:
        stat = self.stats[rel]
        cache_key = self.landing.uri(rel)
        cached = self.cache.get(cache_key)
        suffix = "." + rel.rsplit(".", 1)[-1].lower()
        if cached and cached[0] == stat.size and cached[1] == stat.version:
            sha = cached[2]
            key = content_key(prefix, sha, suffix) if stat.size else None
            if key is None or self._stored(key):
                return _StoredFile(sha, key, stat.size)
        data = self.landing.read(rel)
        sha = sha256_bytes(data)
        key = None
        if data:
            key = content_key(prefix, sha, suffix)
            uploaded = self.store.put_if_absent(key, data)
            with self._lock:
                self.uploaded += uploaded
        with self._lock:
            self.cache_updates[cache_key] = (len(data), stat.version, sha)
        return _StoredFile(sha, key, len(data))

    def _stored(self, key: str) -> bool:
        return key in self.listed if self.listed is not None else self.store.exists(key)


def _listed_objects(conn, store: ObjectStore, files: int) -> set[str] | None:
    """The keys under `raw/` when listing them costs less than `files` existence requests;
    the hash cache's size stands for the number of stored objects."""
    if not files:
        return None
    stored = conn.execute(sa.text("SELECT count(*) FROM landing_files")).scalar_one()
    if stored > LIST_OBJECTS_PER_FILE * files:
        return None
    return set(store.list_keys("raw/"))


def plan_ingest(
    settings: Settings, run_id: str, landing: str | None = None, size: int | None = None
) -> list[dict]:
    """Read the landing zone's layout (metadata and file list, not the files) and split its
    tracks into shards; what the whole run needs (rejections, counts) goes beside them."""
    location = landing or settings.landing
    store = ObjectStore(settings)
    store.ensure_bucket()
    engine = db.engine(settings.database_url)
    db.migrate(engine)
    source = Landing.open(location, store)
    prefix = run_prefix("ingest", run_id)
    # The listing lives in temporary tables of this transaction, which writes nothing else.
    with engine.begin() as conn:
        listing = Listing(conn, source)
        scans = listing.subsets()
        # Streamed from the metadata into the shards, one shard held at a time.
        items = (asdict(e) for s in scans for e in s.entries())
        try:
            shards = split(
                store, prefix, items, size or shard_size(), landing=location, run_id=run_id
            )
        except CatalogueError:
            discard(store, prefix)  # a metadata file unreadable halfway leaves no shards behind
            raise
        rejections = [r for s in scans for r in s.rejections]
    rejections += [
        Rejection("-", rel, "symbolic link, not followed")
        for rel in getattr(source, "skipped_links", [])
    ]
    store.put_json(
        f"{prefix}/plan.json",
        {
            "landing": source.describe(),
            "files_seen": listing.files,
            "rejections": [asdict(r) for r in rejections],
        },
    )
    lineage.read(lineage.landing(location))
    lineage.wrote(lineage.objects(settings, prefix))
    return shards


def upload_shard(settings: Settings, shard: dict) -> dict:
    """Hash one shard's files (skipping those cached unchanged), upload the new ones and write
    the tracks' rows beside the shard; the catalogue is not touched."""
    store = ObjectStore(settings)
    source = Landing.open(shard["landing"], store)
    entries = [TrackEntry(**item) for item in inputs(store, shard)]
    stats = {rel: FileStat(*v) for e in entries for rel, v in e.stats.items()}
    with db.engine(settings.database_url).connect() as conn:
        cache = {
            p: (s, v, h)
            for p, s, v, h in conn.execute(
                sa.text(
                    "SELECT path, size_bytes, mtime_ns, sha256 FROM landing_files "
                    "WHERE path = ANY(:p)"
                ),
                {"p": [source.uri(rel) for rel in stats]},
            )
        }
        listed = _listed_objects(conn, store, len(cache))
    files = _FileStore(source, store, stats, cache, listed)
    rows, started = [], time.monotonic()
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        done = pool.map(lambda entry: _track_row(entry, files, shard["run_id"]), entries)
        for i, row in enumerate(done, 1):
            rows.append(row)
            if i % 500 == 0 or i == len(entries):
                log.info(
                    "ingest shard %d: %d/%d tracks hashed (%.0f tracks/s), %d files uploaded",
                    shard["index"],
                    i,
                    len(entries),
                    i / max(time.monotonic() - started, 1e-9),
                    files.uploaded,
                )
    output = {"rows": rows, "cache": files.cache_updates, "uploaded": files.uploaded}
    store.put_json(output_key(shard, "rows.json"), output)
    run_objects = lineage.objects(settings, shard["key"].rsplit("/", 1)[0])
    lineage.read(lineage.landing(shard["landing"]), run_objects)
    lineage.wrote(lineage.objects(settings, "raw"), run_objects)
    return shard


def run_ingest(
    settings: Settings, run_id: str, landing: str | None = None, shards: list[dict] | None = None
) -> IngestResult:
    """Write what the uploaded `shards` (the DAG's mapped tasks) found, in one transaction; or
    plan and upload them here first (one process: the CLI and tests).

    The shards are read and written one at a time, each compared with the stored rows of its own
    tracks, so this task holds a shard of the batch, never the batch or the catalogue."""
    if shards is None:
        shards = [upload_shard(settings, s) for s in plan_ingest(settings, run_id, landing)]
    store = ObjectStore(settings)
    plan = store.get_json(f"{run_prefix('ingest', run_id)}/plan.json")
    result = IngestResult(run_id, landing=plan["landing"], files_seen=plan["files_seen"])
    rejections = {(r["subset"], r["item"], r["reason"]) for r in plan["rejections"]}
    result.rejected, result.rejections = len(rejections), plan["rejections"]
    for r in plan["rejections"]:
        log.warning("rejected %s %s: %s", r["subset"], r["item"], r["reason"])
    shards = ordered(store, shards, "rows.json")  # all there, or nothing is written

    # One transaction: a crash, or a shard output that cannot be read, leaves the previous state.
    with db.engine(settings.database_url).begin() as conn:
        old_rejections = {tuple(r) for r in conn.execute(SELECT_REJECTIONS)}
        result.rejections_changed = rejections != old_rejections
        # The run's row comes first, as tracks reference it; a run that changes nothing removes
        # it again, unless an earlier attempt of the same run wrote it.
        claimed = conn.execute(CLAIM_RUN, {"run_id": run_id, "landing": result.landing}).rowcount
        for shard in shards:
            _write_shard(conn, store, shard, result)
        if result.changed:
            conn.execute(RECORD_RUN, {k: v for k, v in asdict(result).items() if k != "rejections"})
        elif claimed:
            conn.execute(sa.text("DELETE FROM ingest_runs WHERE run_id = :r"), {"r": run_id})
        if result.rejections_changed:
            _replace_rejections(conn, run_id, rejections)

    # The landing zone is this step's input, whichever task of the run read which file of it.
    lineage.read(lineage.landing(shards[0]["landing"]))
    if result.changed:
        lineage.wrote(
            lineage.objects(settings, "raw"),
            *lineage.tables(settings, "tracks", "ingest_runs", "ingest_rejections"),
        )
    discard(store, run_prefix("ingest", run_id))
    log.info(
        "ingest %s: %d new, %d changed, %d unchanged, %d quarantined, %d rejected, "
        "%d files uploaded",
        run_id,
        result.tracks_new,
        result.tracks_changed,
        result.tracks_unchanged,
        result.quarantined,
        result.rejected,
        result.files_uploaded,
    )
    return result


def _write_shard(conn, store: ObjectStore, shard: dict, result: IngestResult) -> None:
    """Upsert the shard's new and changed tracks and its files' hashes; count them in `result`."""
    output = store.get_json(output_key(shard, "rows.json"))
    result.files_uploaded += output["uploaded"]
    stored = {
        r.track_id: r
        for r in conn.execute(STORED_TRACKS, {"ids": [row["track_id"] for row in output["rows"]]})
    }
    rows = []
    for row in output["rows"]:
        old = stored.get(row["track_id"])
        if old is None:
            result.tracks_new += 1
        elif _same_content(old, row):
            result.tracks_unchanged += 1
            continue
        else:
            result.tracks_changed += 1
        result.quarantined += row["status"] == "quarantined"
        rows.append({**row, "metadata": json.dumps(row["metadata"])})
    if rows:
        conn.execute(UPSERT, rows)
    cache = [{"p": p, "s": s, "m": m, "h": h} for p, (s, m, h) in output["cache"].items()]
    if cache:
        conn.execute(CACHE_FILES, cache)
    log.info(
        "ingest: shard %d written, %d of its %d tracks new or changed",
        shard["index"],
        len(rows),
        len(output["rows"]),
    )


def _replace_rejections(conn, run_id: str, rejections: set) -> None:
    # Rejections describe the landing zone as it is now; fixed items drop out.
    conn.execute(sa.text("DELETE FROM ingest_rejections"))
    if rejections:
        conn.execute(
            sa.text(
                "INSERT INTO ingest_rejections (run_id, subset, item, reason) "
                "VALUES (:run_id, :subset, :item, :reason)"
            ),
            [
                {"run_id": run_id, "subset": s, "item": i, "reason": r}
                for s, i, r in sorted(rejections)
            ],
        )


def _track_row(entry: TrackEntry, files: _FileStore, run_id: str) -> dict:
    problems = list(entry.problems)
    audio = files.put(entry.audio_path, "raw/audio") if entry.audio_path else None
    lyrics = files.put(entry.lyrics_path, "raw/lyrics") if entry.lyrics_path else None
    if audio and audio.size == 0:
        problems.append("audio file is empty (0 bytes)")
    if lyrics and lyrics.size == 0:
        problems.append("lyrics file is empty (0 bytes)")
    meta = entry.metadata
    return {
        "track_id": entry.track_id,
        "subset": entry.subset,
        "song_id": entry.song_id,
        "audio_song": entry.audio_song,
        "lyric_song": entry.lyric_song,
        "quadrant": entry.quadrant,
        "artist": meta.get("Artist"),
        "title": meta.get("Title"),
        "genres": entry.genres,
        "genre": entry.genre,
        "year": meta.get("Year") or meta.get("ActualYear"),
        "metadata": meta,
        "audio_sha256": audio.sha256 if audio else None,
        "audio_key": audio.key if audio else None,
        "audio_bytes": audio.size if audio else None,
        "lyrics_sha256": lyrics.sha256 if lyrics else None,
        "lyrics_key": lyrics.key if lyrics else None,
        "lyrics_bytes": lyrics.size if lyrics else None,
        # Files that are missing or empty never reach validation; the reason says why.
        "status": "quarantined" if problems else "new",
        "status_reason": "; ".join(problems) or None,
        "ingest_run_id": run_id,
    }


def _same_content(old, row: dict) -> bool:
    return (
        old.audio_sha256 == row["audio_sha256"]
        and old.lyrics_sha256 == row["lyrics_sha256"]
        and old.metadata == row["metadata"]
    )


STORED_TRACKS = sa.text(
    "SELECT track_id, audio_sha256, lyrics_sha256, metadata FROM tracks WHERE track_id = ANY(:ids)"
)

SELECT_REJECTIONS = sa.text("SELECT subset, item, reason FROM ingest_rejections")

CLAIM_RUN = sa.text(
    "INSERT INTO ingest_runs (run_id, landing) VALUES (:run_id, :landing) "
    "ON CONFLICT (run_id) DO NOTHING"
)

RECORD_RUN = sa.text("""
INSERT INTO ingest_runs (run_id, landing, files_seen, files_uploaded, tracks_new, tracks_changed,
    tracks_unchanged, rejected)
VALUES (:run_id, :landing, :files_seen, :files_uploaded, :tracks_new, :tracks_changed,
    :tracks_unchanged, :rejected)
ON CONFLICT (run_id) DO UPDATE SET files_seen = EXCLUDED.files_seen,
    files_uploaded = EXCLUDED.files_uploaded, tracks_new = EXCLUDED.tracks_new,
    tracks_changed = EXCLUDED.tracks_changed, tracks_unchanged = EXCLUDED.tracks_unchanged,
    rejected = EXCLUDED.rejected
""")

UPSERT = sa.text("""
INSERT INTO tracks (track_id, subset, song_id, audio_song, lyric_song, quadrant, artist, title,
    genres, genre, year, metadata, audio_sha256, audio_key, audio_bytes, lyrics_sha256,
    lyrics_key, lyrics_bytes, status, status_reason, ingest_run_id, validate_run_id)
VALUES (:track_id, :subset, :song_id, :audio_song, :lyric_song, :quadrant, :artist, :title,
    :genres, :genre, :year, CAST(:metadata AS jsonb), :audio_sha256, :audio_key, :audio_bytes,
    :lyrics_sha256, :lyrics_key, :lyrics_bytes, :status, :status_reason, :ingest_run_id, NULL)
ON CONFLICT (track_id) DO UPDATE SET
    audio_song = EXCLUDED.audio_song, lyric_song = EXCLUDED.lyric_song,
    quadrant = EXCLUDED.quadrant, artist = EXCLUDED.artist, title = EXCLUDED.title,
    genres = EXCLUDED.genres, genre = EXCLUDED.genre, year = EXCLUDED.year,
    metadata = EXCLUDED.metadata, audio_sha256 = EXCLUDED.audio_sha256,
    audio_key = EXCLUDED.audio_key, audio_bytes = EXCLUDED.audio_bytes,
    lyrics_sha256 = EXCLUDED.lyrics_sha256, lyrics_key = EXCLUDED.lyrics_key,
    lyrics_bytes = EXCLUDED.lyrics_bytes, status = EXCLUDED.status,
    status_reason = EXCLUDED.status_reason, ingest_run_id = EXCLUDED.ingest_run_id,
    validate_run_id = NULL, updated_at = now()
""")

CACHE_FILES = sa.text(
    "INSERT INTO landing_files (path, size_bytes, mtime_ns, sha256) "
    "VALUES (:p, :s, :m, :h) ON CONFLICT (path) DO UPDATE SET "
    "size_bytes = EXCLUDED.size_bytes, mtime_ns = EXCLUDED.mtime_ns, sha256 = EXCLUDED.sha256"
)
