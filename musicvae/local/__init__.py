"""Running musicvae on one machine: the local stack of servers on loopback, `make demo`, a client
for Airflow's REST API, and the MERGE-shaped sample catalogue.

May import everything.
"""
