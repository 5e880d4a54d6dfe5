"""minirun-oci: a runc-compatible OCI runtime (runtime-spec 1.1), issue 18.

    cli.py        argv -> a command; the one place errors become output (text or json log lines)
    config.py     the bundle's config.json: read with a bound, checked, every field it
                  cannot honour refused by name
    state.py      the --root state dir (one dir per container: state.json, exec.fifo)
    container.py  create / start / kill / delete / run: forks the container's init
    init.py       what the init does inside the new namespaces, up to the exec

It shares sandbox/ and linux/ with `minirun run`: rootfs.enter (pivot_root),
rootfs.target (mount points resolved inside the root), the device nodes,
masked and read-only paths, caps and procfs. A field it cannot honour is refused
with one line naming it, never ignored.
"""
