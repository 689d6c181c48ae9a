"""What every stage stands on: settings, exception types, object storage, the database and its
bulk writes, lineage records, the code version, and decoding audio and lyrics files.

Imports nothing else of musicvae.
"""
