"""Where images come from. Every source hands SourceImage objects to
importer.py, which writes them through the store.

    archive.py    docker-archive, OCI archive and OCI layout directories
    archiverefs.py  the names an archive gives its images (annotations, RepoTags)
    importer.py   SourceImage -> cached layers, blobs and the image record
    progress.py   Report, the callback every source tells its progress through,
                  and Metered, a stream that counts the bytes read through it
    registry/     pull and push over the registry HTTP API (client.py, http.py,
                  auth.py, pull.py, push.py)
"""
