/* An attacker inside a container: for SECONDS, watch /proc for processes that
 * appear (such as a `minirun exec` child) and, for each one, try to reach the
 * host through it:
 *   - create TARGET (an absolute host path) through /proc/PID/root;
 *   - read /proc/PID/mountinfo and look for MARKER, a mount only the host has.
 *   - with HOSTEXE ("DEV:INO" of a host file, the host's python): see whether
 *     /proc/PID/exe is that file, PID 1 included.
 * Prints "root PID", "mountinfo PID" or "exe PID" for every success, and
 * "scanned N" at the end. Built static by the tests (gcc -static), so it runs
 * in any image.
 *
 *   procwatch SECONDS TARGET MARKER [HOSTEXE]
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

static int seen[1 << 16];

static int try_root(const char *pid, const char *target) {
    char path[4096];
    snprintf(path, sizeof path, "/proc/%s/root%s", pid, target);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return 0;
    dprintf(fd, "written through /proc/%s/root\n", pid);
    close(fd);
    return 1;
}

static int try_mountinfo(const char *pid, const char *marker) {
    char path[64], buf[1 << 16];
    snprintf(path, sizeof path, "/proc/%s/mountinfo", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t total = 0, n;
    while (total < (ssize_t)sizeof buf - 1 && (n = read(fd, buf + total, sizeof buf - 1 - total)) > 0)
        total += n;
    close(fd);
    buf[total > 0 ? total : 0] = 0;
    return strstr(buf, marker) != NULL;
}

static int try_exe(const char *pid, const char *hostexe) {
    char path[64], got[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%s/exe", pid);
    if (stat(path, &st) != 0)
        return 0;
    snprintf(got, sizeof got, "%lu:%lu", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
    return strcmp(got, hostexe) == 0;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: procwatch SECONDS TARGET MARKER [HOSTEXE]\n");
        return 2;
    }
    const char *hostexe = argc == 5 ? argv[4] : NULL;
    time_t end = time(NULL) + atoi(argv[1]);
    long scans = 0;
    int self = getpid();
    while (time(NULL) < end) {
        DIR *d = opendir("/proc");
        if (!d)
            return 1;
        struct dirent *e;
        while ((e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid < 1 || pid == self || pid >= (1 << 16))
                continue;
            if (hostexe && seen[pid] < 2000 && try_exe(e->d_name, hostexe))
                printf("exe %d\n", pid);
            if (pid == 1)
                continue;
            /* keep trying a pid while it lives: the window is in its first moments */
            if (seen[pid] > 2000)
                continue;
            seen[pid]++;
            if (try_root(e->d_name, argv[2]))
                printf("root %d\n", pid);
            if (try_mountinfo(e->d_name, argv[3]))
                printf("mountinfo %d\n", pid);
        }
        closedir(d);
        scans++;
    }
    printf("scanned %ld\n", scans);
    return 0;
}
