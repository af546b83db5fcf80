/* For tests/security_guest.rs (audit S3): sets an xattr and reports the
 * outcome.   setxattr PATH NAME VALUE   -> prints "ok" or the errno text. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    if (setxattr(argv[1], argv[2], argv[3], strlen(argv[3]), 0) == 0) {
        puts("ok");
        return 0;
    }
    printf("%s\n", strerror(errno));
    return 1;
}
