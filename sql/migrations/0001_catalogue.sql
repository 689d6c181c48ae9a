-- The catalogue: tracks as ingested from a MERGE release, what validation decided about them,
-- model versions, and the embeddings and cluster assignments each recluster run writes.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE ingest_runs (
    run_id          text PRIMARY KEY,
    landing         text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    files_seen      integer NOT NULL DEFAULT 0,
    files_uploaded  integer NOT NULL DEFAULT 0,
    tracks_new      integer NOT NULL DEFAULT 0,
    tracks_changed  integer NOT NULL DEFAULT 0,
    tracks_unchanged integer NOT NULL DEFAULT 0,
    rejected        integer NOT NULL DEFAULT 0
);

-- Stat cache: a landing file whose size and mtime did not change is not hashed again,
-- so a rerun costs a directory walk, not a read of the whole catalogue.
CREATE TABLE landing_files (
    path        text PRIMARY KEY,
    size_bytes  bigint NOT NULL,
    mtime_ns    bigint NOT NULL,
    sha256      text NOT NULL
);

CREATE TABLE tracks (
    track_id        text PRIMARY KEY,              -- '<subset>/<song id>', e.g. 'bimodal_balanced/A001'
    subset          text NOT NULL,                 -- audio|lyrics|bimodal _ balanced|complete
    song_id         text NOT NULL,                 -- Song, or Audio_Song for bimodal subsets
    audio_song      text,
    lyric_song      text,
    quadrant        text,
    artist          text,
    title           text,
    genres          text[] NOT NULL DEFAULT '{}',
    genre           text,                          -- first listed genre cut at '/', as the research code did
    year            text,
    metadata        jsonb NOT NULL DEFAULT '{}',   -- every metadata column, as read
    audio_sha256    text,
    audio_key       text,
    audio_bytes     bigint,
    lyrics_sha256   text,
    lyrics_key      text,
    lyrics_bytes    bigint,
    status          text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'valid', 'quarantined')),
    status_reason   text,
    ingest_run_id   text NOT NULL REFERENCES ingest_runs (run_id),
    validate_run_id text,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subset, song_id)
);
CREATE INDEX tracks_status_idx ON tracks (status);

-- Things that could not become a track at all: malformed ids, files without a metadata row.
CREATE TABLE ingest_rejections (
    run_id      text NOT NULL REFERENCES ingest_runs (run_id),
    subset      text NOT NULL,
    item        text NOT NULL,                     -- the offending id or relative path
    reason      text NOT NULL,
    PRIMARY KEY (run_id, subset, item)
);

CREATE TABLE data_quality_runs (
    run_id          text PRIMARY KEY,
    started_at      timestamptz NOT NULL DEFAULT now(),
    tracks_checked  integer NOT NULL,
    tracks_valid    integer NOT NULL,
    tracks_quarantined integer NOT NULL,
    report_key      text,
    summary         jsonb NOT NULL DEFAULT '{}'
);

-- One profile per track content: validation only profiles content it has not seen.
CREATE TABLE track_profiles (
    track_id        text PRIMARY KEY REFERENCES tracks (track_id) ON DELETE CASCADE,
    audio_sha256    text,
    lyrics_sha256   text,
    profile         jsonb NOT NULL,
    run_id          text NOT NULL REFERENCES data_quality_runs (run_id)
);

CREATE TABLE track_issues (
    run_id      text NOT NULL REFERENCES data_quality_runs (run_id),
    track_id    text NOT NULL REFERENCES tracks (track_id) ON DELETE CASCADE,
    check_name  text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('error', 'warning')),
    detail      text NOT NULL,
    PRIMARY KEY (run_id, track_id, check_name)
);

CREATE TABLE model_versions (
    version         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    snapshot_id     text NOT NULL,                 -- hash of the (track, content) pairs trained on
    n_tracks        integer NOT NULL,
    params          jsonb NOT NULL,
    params_hash     text NOT NULL,
    code_version    text NOT NULL,
    artifact_prefix text NOT NULL,                 -- object-store prefix: model.pt, vectorizer.pkl, config.json
    metrics         jsonb NOT NULL DEFAULT '{}',
    dag_run_id      text,
    UNIQUE (snapshot_id, params_hash, code_version)
);

CREATE TABLE cluster_runs (
    run_id          text PRIMARY KEY,
    model_version   integer NOT NULL REFERENCES model_versions (version),
    created_at      timestamptz NOT NULL DEFAULT now(),
    n_clusters      integer NOT NULL,
    n_tracks        integer NOT NULL,
    metrics         jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE clusters (
    run_id          text NOT NULL REFERENCES cluster_runs (run_id) ON DELETE CASCADE,
    cluster_id      integer NOT NULL,
    size            integer NOT NULL,
    label           text NOT NULL,
    top_genres      jsonb NOT NULL,
    top_quadrants   jsonb NOT NULL,
    centroid        vector NOT NULL,
    PRIMARY KEY (run_id, cluster_id)
);

CREATE TABLE track_embeddings (
    track_id        text NOT NULL REFERENCES tracks (track_id) ON DELETE CASCADE,
    model_version   integer NOT NULL REFERENCES model_versions (version),
    run_id          text NOT NULL REFERENCES cluster_runs (run_id) ON DELETE CASCADE,
    embedding       vector NOT NULL,
    PRIMARY KEY (track_id, model_version)
);

CREATE TABLE cluster_assignments (
    run_id          text NOT NULL REFERENCES cluster_runs (run_id) ON DELETE CASCADE,
    track_id        text NOT NULL REFERENCES tracks (track_id) ON DELETE CASCADE,
    cluster_id      integer NOT NULL,
    distance        real NOT NULL,                 -- Euclidean distance to the cluster centroid
    PRIMARY KEY (run_id, track_id),
    FOREIGN KEY (run_id, cluster_id) REFERENCES clusters (run_id, cluster_id) ON DELETE CASCADE
);

-- What users query: every valid track with its cluster from the latest recluster run.
CREATE VIEW current_cluster_assignments AS
WITH latest AS (
    SELECT run_id, model_version FROM cluster_runs ORDER BY created_at DESC, run_id DESC LIMIT 1
)
SELECT t.track_id, t.subset, t.song_id, t.artist, t.title, t.genres, t.genre, t.quadrant,
       a.cluster_id, c.label AS cluster_label, a.distance, l.model_version, a.run_id
FROM latest l
JOIN cluster_assignments a ON a.run_id = l.run_id
JOIN clusters c ON c.run_id = a.run_id AND c.cluster_id = a.cluster_id
JOIN tracks t ON t.track_id = a.track_id
WHERE t.status = 'valid';
