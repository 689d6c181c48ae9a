"""A deterministic, MERGE-shaped sample catalogue for proving the pipeline's plumbing.

The real MERGE Bimodal Balanced release (Louro et al. 2024) cannot ship with this repository,
yet the DAGs, the data checks and the model code all need a landing zone that looks like it:
the same folder layout, the same 27 metadata columns, the same ID shapes and the same dirty
corners (mojibake artist names, messy years, empty genres). `layout.build_sample` writes such a
tree.

The audio is synthesised per genre label with learnable structure (tempo, timbre, pitch range,
percussiveness, noise), and the lyrics mix per-genre words into a shared vocabulary, so a
working model finds *some* genre structure. That is only evidence that the plumbing carries
signal end to end; nothing measured on this sample says anything about model quality on music.

With ``defects=True`` the tree also carries the faults the pipeline must survive (empty and
corrupt audio, a Latin-1 lyrics file, rows without files, files without rows, a path-traversal
ID); `layout.SampleSummary.defects` describes each.

Output depends only on (tracks, seed, defects), and a rebuild leaves identical files alone, so
downstream change detection sees no change.

`genres` holds the genre table and how many rows each label gets; `seeding` the random streams
everything is drawn from; `metadata` the planned rows and their CSV columns; `audio` the
synthesis and MP3 encoding; `lyrics` the pseudo-lyrics; `layout` writes the folder tree (the
marker file, the audio cache and workers, the deliberate defects). Import from those modules:
this package re-exports nothing.

May import `musicvae.ingest.merge` and `musicvae.core`; nothing else from `musicvae.local`.
"""
