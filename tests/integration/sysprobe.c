/* sysprobe: make one raw syscall an attacker inside a container would try, print
   "NAME=0" when it worked or "NAME=<errno>" when it failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEYCTL_GET_KEYRING_ID 0
#define KEYCTL_JOIN_SESSION_KEYRING 1
#define KEYCTL_SEARCH 10
#define KEY_SPEC_PROCESS_KEYRING -2
#define KEY_SPEC_SESSION_KEYRING -3

static long flags_of(const char *names) {
    long flags = 0;
    if (strstr(names, "user")) flags |= CLONE_NEWUSER;
    if (strstr(names, "mnt")) flags |= CLONE_NEWNS;
    if (strstr(names, "net")) flags |= CLONE_NEWNET;
    if (strstr(names, "pid")) flags |= CLONE_NEWPID;
    if (strstr(names, "uts")) flags |= CLONE_NEWUTS;
    if (strstr(names, "ipc")) flags |= CLONE_NEWIPC;
    if (strstr(names, "cgroup")) flags |= CLONE_NEWCGROUP;
    return flags;
}

static int report(const char *name, long rc) {
    printf("%s=%d\n", name, rc < 0 ? errno : 0);
    fflush(stdout);
    return 0;
}

#ifdef __x86_64__
/* the 32-bit syscall table, through int 0x80, from this 64-bit program: another
   architecture as far as seccomp is concerned, with its own syscall numbers */
static long int80(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    if (ret < 0 && ret > -4096) { errno = (int)-ret; return -1; }
    return ret;
}
#endif

static long child_done(long pid) {
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    return pid;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: sysprobe PROBE [ARG]\n"); return 2; }
    const char *p = argv[1], *arg = argc > 2 ? argv[2] : "";
    if (!strcmp(p, "keyctl"))
        return report(p, syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    if (!strcmp(p, "add_key"))      /* into this process's own keyring: gone when it exits */
        return report(p, syscall(SYS_add_key, "user", "sysprobe", "x", 1, KEY_SPEC_PROCESS_KEYRING));
    if (!strcmp(p, "request_key"))
        return report(p, syscall(SYS_request_key, "user", "sysprobe", NULL, 0));
    if (!strcmp(p, "search"))       /* a key named ARG in our session keyring */
        return report(p, syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", arg, 0));
    if (!strcmp(p, "unshare"))
        return report(p, unshare(flags_of(arg)));
    if (!strcmp(p, "clone"))
        return report(p, child_done(syscall(SYS_clone, flags_of(arg) | SIGCHLD, 0, 0, 0, 0)));
    if (!strcmp(p, "clone3")) {
        uint64_t args[11] = {0};
        args[0] = flags_of(arg);
        args[4] = SIGCHLD;          /* exit_signal */
        return report(p, child_done(syscall(SYS_clone3, args, 88)));
    }
    if (!strcmp(p, "fork"))          /* what libc's fork does: clone without namespace flags */
        return report(p, child_done(fork()));
    if (!strcmp(p, "mount"))
        return report(p, mount("none", arg, "tmpfs", 0, ""));
    if (!strcmp(p, "userns-mount")) {  /* the classic: a user namespace gives CAP_SYS_ADMIN there */
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return report(p, -1);
        return report(p, mount("none", arg, "tmpfs", 0, ""));
    }
    if (!strcmp(p, "kcmp"))
        return report(p, syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 0));
    if (!strcmp(p, "ptrace"))
        return report(p, syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0));
    if (!strcmp(p, "personality"))
        return report(p, personality(strtoul(arg, NULL, 0)) == -1 ? -1 : 0);
    if (!strcmp(p, "mkdir"))
        return report(p, mkdir(arg, 0755));
    if (!strcmp(p, "setns"))
        return report(p, setns(-1, 0));   /* EBADF when allowed, EPERM when filtered */
#ifdef __x86_64__
    if (!strcmp(p, "i386-getpid"))
        return report(p, int80(20, 0, 0, 0));
    if (!strcmp(p, "i386-keyctl"))
        return report(p, int80(288, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    if (!strcmp(p, "i386-unshare"))
        return report(p, int80(310, flags_of(arg), 0, 0));
#endif
    if (!strcmp(p, "session")) {    /* on the host: a new session keyring holding key ARG, then exec */
        if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0) return report(p, -1);
        if (syscall(SYS_add_key, "user", arg, "secret", 6, KEY_SPEC_SESSION_KEYRING) < 0)
            return report(p, -1);
        execvp(argv[3], argv + 3);
        return report(p, -1);
    }
    fprintf(stderr, "sysprobe: unknown probe %s\n", p);
    return 2;
}
