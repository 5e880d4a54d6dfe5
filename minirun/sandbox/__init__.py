"""Everything that happens between fork() and exec(), and the parent's side of it.

    program.py        ProcessSpec: argv, env, cwd, user, hostname; a pure function of
                      the image config and the flags
    process.py        fork into new namespaces (linux.NAMESPACES), report exec failures,
                      wait, forward signals; the child's steps in order
    command.py        the command's last steps: its user, then exec or supervise it
    trampoline.py     the static program (trampoline.s) that execs the command from a
                      sealed memfd, and stays as --init's PID 1 and exec's waiter
    rootfs.py         inside the child: the overlay, /proc, /dev, /sys, pivot_root, the cwd
    mounts.py         volumes, tmpfs, /etc files and masked paths as Mount records
    users.py          USER[:GROUP] resolved against the container's /etc/passwd
    rlimits.py        --ulimit
    tty.py            -t: the pty made in the container's devpts, relayed to ours
    join.py           `exec`: join a running container's namespaces, root and user
    seccomp.py        the filter and the store's seccomp/ it is cached in; compiled by
                      seccomp_build.py from seccomp_profile.py's reading of a profile
                      (seccomp_default.json is Docker's) through libseccomp.py

A container's cgroup is linux/cgroups/'s; the overlay mount is linux/overlay.py's.
"""
