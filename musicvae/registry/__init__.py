"""What was trained on what: snapshots of the valid tracks, model versions (artifacts in object
storage, one `model_versions` row each, the champion alias), and embedding tracks with a
registered version.

May import `core` and `model`.
"""
