"""Where training runs: the Airflow queue and pool of the task that trains.

The compose deployment sends training, and the front end's feature extraction, to the `gpu`
queue (only the GPU worker consumes it);
locally it runs on Airflow's default queue. Everywhere, the `training` pool has one slot, so at
most one model trains at a time whatever the number of runs or workers. Stdlib only: the DAG
files and the local stack both read it.
"""

import os

TRAINING_QUEUE = os.environ.get("MUSICVAE_TRAINING_QUEUE", "default")
TRAINING_POOL = os.environ.get("MUSICVAE_TRAINING_POOL", "training")
TRAINING_POOL_SLOTS = 1
TRAINING_POOL_DESCRIPTION = "musicvae: one model trains at a time"
