"""Exception types. Each says what went wrong and what to do about it."""


class MusicVAEError(Exception):
    """Base class for every error this package raises on purpose."""


class PermanentError(MusicVAEError):
    """Retrying cannot help: the same input and settings fail the same way. Airflow tasks fail
    at once on these (no retries); errors of the servers (refused, timed out) keep their retries."""


class ConfigurationError(PermanentError):
    """A required setting is missing or malformed (environment variable, connection, parameter)."""


class CatalogueError(PermanentError):
    """The landing zone does not look like a MERGE release (missing folder, unreadable metadata)."""


class MetadataSchemaError(CatalogueError):
    """A metadata CSV lacks a column the ingest needs to pair rows with files (a batch failure)."""


class AudioDecodeError(MusicVAEError):
    """An audio file could not be decoded into samples."""


class StackError(MusicVAEError):
    """A local server (PostgreSQL, S3, Airflow) failed to start, stop or answer."""


class MigrationError(MusicVAEError):
    """A schema migration failed or the database is ahead of this code."""


class ModelNotFoundError(PermanentError):
    """No model version exists yet: run the musicvae_retrain DAG first."""


class BatchValidationError(PermanentError):
    """A validation run failed as a whole (broken metadata schema, no valid track, a collapse of
    the valid fraction); no track changed status and nothing downstream should run."""


class ShardMissingError(MusicVAEError):
    """A shard's output is not in object storage: the mapped task that writes it has not
    finished. Clear that task in Airflow (or rerun the run) and the run completes."""
