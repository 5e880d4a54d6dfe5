"""Stand-ins for the standard library, cheaper to import or stricter than it.
They import nothing of minirun outside lib/.

    jsonio.py   JSON through the _json C module, without importing json and re
    frozen.py   @dataclass: small frozen records, cheaper to import than dataclasses
    names.py    digest, hex, tag, hostname and container-name shapes, without re
    log.py      --log-level: one line each on stderr
    fsutil.py   tree walks, sizes, holes, xattrs, remove_tree, make_dir and the umask
    forked.py   run a function in one forked child and get its result (probes)
"""
