-- An operator can overrule validation: the track becomes valid and the decision is kept here,
-- with who made it, why, and what validation had said.
CREATE TABLE quarantine_releases (
    track_id        text NOT NULL REFERENCES tracks (track_id) ON DELETE CASCADE,
    released_at     timestamptz NOT NULL DEFAULT now(),
    released_by     text NOT NULL,
    reason          text NOT NULL CHECK (length(trim(reason)) > 0),
    previous_reason text,
    PRIMARY KEY (track_id, released_at)
);
