"""Where images come from: archives and OCI layouts (archive.py), later
registries. Every source hands SourceImage objects to importer.py, which
writes them through the store."""
