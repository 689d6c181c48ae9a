"""Exception types. Each says what went wrong and what to do about it."""


class MusicVAEError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigurationError(MusicVAEError):
    """A required setting is missing or malformed (environment variable, connection, parameter)."""


class CatalogueError(MusicVAEError):
    """The landing zone does not look like a MERGE release (missing folder, unreadable metadata)."""


class AudioDecodeError(MusicVAEError):
    """An audio file could not be decoded into samples."""


class StackError(MusicVAEError):
    """A local server (PostgreSQL, S3, Airflow) failed to start, stop or answer."""


class MigrationError(MusicVAEError):
    """A schema migration failed or the database is ahead of this code."""


class ModelNotFoundError(MusicVAEError):
    """No model version exists yet: run the musicvae_retrain DAG first."""
