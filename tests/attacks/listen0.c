/* listen0: a guest service that listens on 127.0.0.1:PORT but accepts
 * nothing (backlog 0) until the file GO exists; from then on it answers
 * each connection with "echo:" and what the client sent before its EOF.
 * It daemonises once listening, so the exec that starts it returns only
 * when the port is open. Used by tests/security_daemon.rs (audit F8). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <fcntl.h>

static void serve(int c) {
    struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
    char buf[4096], out[4101];
    size_t len = 0;
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (;;) {
        ssize_t n = read(c, buf + len, sizeof buf - len);
        if (n <= 0) break;
        len += (size_t)n;
        if (len == sizeof buf) break;
    }
    memcpy(out, "echo:", 5);
    memcpy(out + 5, buf, len);
    (void)!write(c, out, len + 5);
    close(c);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: listen0 PORT GOFILE\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 0) != 0) {
        perror("listen0: bind/listen");
        return 1;
    }
    pid_t p = fork();
    if (p < 0) return 1;
    if (p > 0) return 0;
    setsid();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0); dup2(null, 1); dup2(null, 2);
    while (access(argv[2], F_OK) != 0)
        usleep(100 * 1000);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c >= 0) serve(c);
    }
}
