"""Everything that happens between fork() and exec(): namespaces, the root
filesystem, the user, and the parent's side (waiting, signals, exit codes).

    spec.py     ProcessSpec: argv, env, cwd, user, hostname; a pure function of
                the image config and the user's flags
    rootfs.py   inside the child: the overlay, /proc, /dev, /sys, pivot_root
    users.py    USER[:GROUP] resolved against the container's /etc/passwd
    process.py  fork into new namespaces, report exec failures, wait, forward signals
"""
