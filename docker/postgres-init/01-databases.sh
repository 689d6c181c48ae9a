#!/usr/bin/env bash
# Runs once, when the postgres container initialises an empty data directory
# (mounted read-only into /docker-entrypoint-initdb.d by docker-compose.yml).
#
# One server, two databases, each owned by its own login role:
#   airflow   - Airflow metadata + Celery result backend  (role airflow)
#   catalogue - the musicvae catalogue with pgvector       (role musicvae)
#
# Passwords come from the container environment (AIRFLOW_DB_PASSWORD,
# CATALOGUE_DB_PASSWORD), which docker-compose.yml fills from .env. They are
# passed to psql as variables and quoted by psql (:'var'), never spliced into SQL.
# Changing them in .env later does NOT change them here: see docker/README.md.
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is not set}"
: "${CATALOGUE_DB_PASSWORD:?CATALOGUE_DB_PASSWORD is not set}"
case "${POSTGRES_PASSWORD:-} ${AIRFLOW_DB_PASSWORD} ${CATALOGUE_DB_PASSWORD}" in
    *CHANGE_ME*)
        echo "a database password still has its .env.example placeholder; edit .env" >&2
        exit 1
        ;;
esac

psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}")

"${psql[@]}" --dbname "${POSTGRES_DB:-postgres}" \
    -v airflow_password="${AIRFLOW_DB_PASSWORD}" \
    -v catalogue_password="${CATALOGUE_DB_PASSWORD}" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE ROLE musicvae LOGIN PASSWORD :'catalogue_password';
CREATE DATABASE airflow OWNER airflow;
CREATE DATABASE catalogue OWNER musicvae;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE catalogue FROM PUBLIC;
SQL

# pgvector is installed by the superuser here, so the migrations
# (`musicvae db migrate`, run as the unprivileged musicvae role) find it present.
# On PostgreSQL 15+ the public schema belongs to pg_database_owner, so each
# owner role can create its tables there without further grants.
"${psql[@]}" --dbname catalogue <<'SQL'
CREATE EXTENSION IF NOT EXISTS vector;
SQL
