// A test's checkpoint directory (files only, no subdirectories) removed
// after the test, without a shell.
#ifndef HGRID_TESTS_TEMP_DIR_H
#define HGRID_TESTS_TEMP_DIR_H

#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

// 0 when dir and every file in it are gone, -1 otherwise.
static inline int temp_dir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char path[4096];
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            rc |= unlink(path);
        }
    closedir(d);
    return rc | rmdir(dir);
}

#endif
