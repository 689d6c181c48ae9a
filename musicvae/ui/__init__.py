"""The pages the Airflow UI plugin serves (`plugins/musicvae_reports.py`): data-quality and
evaluation reports, the clusters pages and their figures.

May import `core`, `model`, `registry` and `quality`.
"""
