-- Named pointers to model versions. 'champion' is the model the catalogue is clustered with;
-- a new version takes it only when it is not worse on held-back data (see model_versions.promotion).
CREATE TABLE model_aliases (
    alias       text PRIMARY KEY,
    version     integer NOT NULL REFERENCES model_versions (version),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL
);

ALTER TABLE model_versions
    ADD COLUMN promotion jsonb,           -- decision, both scores, margin and the reason
    ADD COLUMN evaluation_prefix text;    -- object-store prefix of the evaluation report and plots
