"""`minirun run`: options -> a frozen plan -> start.

    plan.py    RunOptions (the flags), check_options() refuses what can be refused
               before anything exists, prepare() plans the container in memory: a
               frozen sandbox/process.py Launch and a Pending write of containers/<id>/
    start.py   run(): start the planned container, join it to its cgroup and
               network, wait, release what it held and record how it ended (-d: in
               a monitor process of our own)
"""
