"""Registries speaking the OCI distribution API (Docker Hub, GHCR, Harbor, a private one).

    http.py     HTTP/1.1 with keep-alive, redirects, TLS policy (the only network code)
    auth.py     WWW-Authenticate challenges, bearer tokens, basic credentials from
                ~/.docker/config.json (also written by `minirun login`)
    client.py   the API calls: manifests, blobs (with Range), uploads, mounts
    pull.py     pull: pick the platform, download in parallel, verify, extract
    push.py     push: skip present blobs, cross-repository mount, upload, manifest
"""
