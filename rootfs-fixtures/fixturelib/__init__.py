"""Deterministic builder of test images (OCI layouts, OCI archives, docker archives).

Modules, bottom-up:
  entries  -- a layer's content as a flat {path: Entry} map (from a tree, busybox, or a pattern)
  tarball  -- orders entries, writes the reproducible tar and gzip, computes digests
  spec     -- reads images/*.json and bundles/*.json into plain dataclasses
  image    -- turns a spec into config + manifest blobs
  output   -- writes the OCI layout dir, the OCI archive and the docker archive
"""
