"""The use cases behind the CLI. They take a Store and arguments, return data
(or call a callback they were given), and never print; cli/ shows what they
return. `run` is run/, for its start latency.

    catalog.py     images: load, list, rmi, tag, inspect, history
    control.py     containers: ps, rm, inspect, diff, logs, stop, kill, exec
    commit.py      a new image from a container's upper dir
    save.py        images to docker-archive, OCI archive or OCI layout
    export.py      export a container as one tar, import one as an image
    prune.py       remove what nothing needs
    disk.py        where the bytes go: layers, system df, the image tree
    upperdiff.py   compare two containers' upper dirs
    fsck.py        check layers against their file manifests; storecheck.py the
                   locks and records, and --repair
    info.py        the effective configuration, kernel features, store statistics
    outfile.py     write an output file (-o) whole or not at all
"""
