"""Layer tarballs: unpack (decompress, hash the diff_id, safe extract, whiteout
conversion) and read back an upper dir as changes."""
