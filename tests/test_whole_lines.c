// util/whole_lines.h: processes sharing one pipe (a host's workers under
// hgrid-ssh) each write long lines from two threads to stdout and stderr,
// both the pipe; with whole_lines_install every line arrives whole. The
// same writers without it cut lines (reported, the control that shows the
// check sees cuts). A regular file keeps plain stdio.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/check.h"
#include "util/whole_lines.h"

#define WRITERS 6
#define OUT_LINES 40
#define OUT_LEN 30000 // a pipe keeps a write whole only up to 4 KiB
#define ERR_LINES 40
#define ERR_LEN 9000
#define HUGE_LEN (3 << 20) // longer than the stream's 1 MiB buffer

typedef struct {
    FILE *stream;
    char tag; // 'o' stdout, 'e' stderr
    int writer, lines, len;
} line_job;

static void *write_lines(void *arg)
{
    line_job *j = arg;
    char *body = malloc((size_t)j->len + 1);
    memset(body, 'a' + j->writer, (size_t)j->len);
    body[j->len] = '\0';
    for (int i = 0; i < j->lines; i++)
        fprintf(j->stream, "w%d%c %s\n", j->writer, j->tag, body);
    free(body);
    return NULL;
}

// A writer process: stdout and stderr are the pipe.
static void writer(int k, int fd, int locked)
{
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    if (locked && whole_lines_install() != 2)
        _exit(3);
    line_job out = {stdout, 'o', k, OUT_LINES, OUT_LEN}, err = {stderr, 'e', k, ERR_LINES, ERR_LEN};
    pthread_t a, b;
    pthread_create(&a, NULL, write_lines, &out);
    pthread_create(&b, NULL, write_lines, &err);
    if (locked) { // one line longer than the buffer, put whole
        char *huge = malloc(HUGE_LEN + 6);
        int n = sprintf(huge, "w%dh ", k);
        memset(huge + n, 'a' + k, HUGE_LEN);
        huge[n + HUGE_LEN] = '\n';
        if (whole_lines_put(stdout, huge, (size_t)n + HUGE_LEN + 1) != 0)
            _exit(4);
        free(huge);
    }
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    exit(0); // flushes the streams
}

// Runs WRITERS writers into one pipe; returns the lines that are not whole
// and counts each writer's whole lines by kind.
static int run_writers(int locked, int counts[WRITERS][3])
{
    int p[2];
    fflush(stdout);
    if (pipe(p) != 0)
        return -1;
    pid_t pids[WRITERS];
    for (int k = 0; k < WRITERS; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            close(p[0]);
            writer(k, p[1], locked);
        }
    }
    close(p[1]);
    FILE *in = fdopen(p[0], "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int broken = 0;
    memset(counts, 0, sizeof(int[WRITERS][3]));
    while ((len = getline(&line, &cap, in)) > 0) {
        int k = line[1] - '0', want;
        char tag = len > 3 ? line[2] : 0;
        want = tag == 'o' ? OUT_LEN : tag == 'e' ? ERR_LEN : tag == 'h' ? HUGE_LEN : -1;
        int whole = line[0] == 'w' && k >= 0 && k < WRITERS && want > 0 && len == want + 5 &&
                    line[3] == ' ' && line[len - 1] == '\n';
        for (ssize_t i = 4; whole && i < len - 1; i++)
            whole = line[i] == 'a' + k;
        if (whole)
            counts[k][tag == 'o' ? 0 : tag == 'e' ? 1 : 2]++;
        else
            broken++;
    }
    free(line);
    fclose(in);
    for (int k = 0; k < WRITERS; k++) {
        int st;
        waitpid(pids[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d exit status %d", k, st);
    }
    return broken;
}

int main(void)
{
    int counts[WRITERS][3];
    int broken = run_writers(1, counts);
    CHECK_EQ(broken, 0);
    for (int k = 0; k < WRITERS; k++) {
        CHECK_EQ(counts[k][0], OUT_LINES);
        CHECK_EQ(counts[k][1], ERR_LINES);
        CHECK_EQ(counts[k][2], 1);
    }
    int control = run_writers(0, counts);
    printf("without whole_lines_install: %d of %d lines cut\n", control,
           WRITERS * (OUT_LINES + ERR_LINES));

    // A regular file: nothing replaced, and whole_lines_put still writes.
    char path[] = "/tmp/hgrid-whole-lines-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        int replaced = whole_lines_install();
        whole_lines_put(stdout, "file line\n", 10);
        _exit(replaced == 0 ? 0 : 5);
    }
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "regular file: replaced streams (status %d)", st);
    char got[32] = {0};
    CHECK(pread(fd, got, sizeof got - 1, 0) == 10 && strcmp(got, "file line\n") == 0, "file holds '%s'",
          got);
    close(fd);
    unlink(path);
    return check_summary("test_whole_lines");
}
