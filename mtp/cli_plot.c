/* cli_plot.c - figures of the command line, drawn by gnuplot (Debian's gnuplot-nox): a script on
 * its standard input, the data inline, the picture written to a temp file beside FILE and renamed
 * over it once gnuplot has succeeded, as every file mtp writes. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mtp/cli.h"

extern char **environ;

/* ".png" or ".svg": gnuplot's terminal for path's extension, or NULL. */
static const char *terminal_of(const char *path) {
    const char *dot = strrchr(path, '.');
    if (dot && strcmp(dot, ".png") == 0) return "pngcairo size 900,600 font 'sans,11'";
    if (dot && strcmp(dot, ".svg") == 0) return "svg size 900,600 dynamic font 'sans,11'";
    return NULL;
}

/* The full path of gnuplot on PATH into buf, or -1. */
static int find_gnuplot(char *buf, size_t cap) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/bin:/bin";
    for (const char *p = path; *p;) {
        const char *end = strchr(p, ':');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len && (size_t)snprintf(buf, cap, "%.*s/gnuplot", (int)len, p) < cap && access(buf, X_OK) == 0) return 0;
        p += len + (end != NULL);
    }
    return -1;
}

int cli_plot_check(const char *cmd, const char *path) {
    char exe[4096];
    if (!terminal_of(path)) {
        cli_error(cmd, "--plot %s: the file must end in .png or .svg", path);
        return -1;
    }
    if (find_gnuplot(exe, sizeof exe)) {
        cli_error(cmd, "--plot needs gnuplot, which is not on PATH (Debian: apt-get install gnuplot-nox)");
        return -1;
    }
    return 0;
}

/* s as a gnuplot single-quoted string: a quote inside is written twice. */
static void put_quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        if (*s != '\n') fputc(*s, f);
    }
    fputc('\'', f);
}

static void write_script(FILE *f, const char *out, const CliFigure *fig) {
    fprintf(f, "set terminal %s\nset output ", terminal_of(out));
    put_quoted(f, out);
    fprintf(f, "\nset title ");
    put_quoted(f, fig->title);
    fprintf(f, " noenhanced\nset xlabel ");
    put_quoted(f, fig->xlabel);
    fprintf(f, " noenhanced\nset ylabel ");
    put_quoted(f, fig->ylabel);
    /* room above the highest point for its label */
    fprintf(f, " noenhanced\nset grid\nset key bottom right box noenhanced\nset yrange [0:*]\n"
               "set offsets 0, 0, graph 0.12, 0\n");
    if (fig->logx) fprintf(f, "set logscale x 2\nset format x '%%.3g'\n");
    for (int i = 0; i < fig->n_series; i++) {
        const CliSeries *s = &fig->series[i];
        fprintf(f, "$s%d << EOD\n", i);
        for (int j = 0; j < s->n; j++) fprintf(f, "%.9g %.9g %d\n", s->x[j], s->y[j], s->label ? s->label[j] : 0);
        fprintf(f, "EOD\n");
    }
    fprintf(f, "plot ");
    for (int i = 0; i < fig->n_series; i++) {
        fprintf(f, "%s$s%d using 1:2 with linespoints linewidth 2 pointtype %d title ", i ? ", " : "", i, 5 + 2 * i);
        put_quoted(f, fig->series[i].title);
        if (fig->series[i].label)
            fprintf(f, ", $s%d using 1:2:(sprintf('%s=%%d', $3)) with labels offset 0,1 notitle", i,
                    fig->label_name ? fig->label_name : "n");
    }
    fprintf(f, "\n");
}

/* Runs gnuplot with the script for fig on its stdin, its output silenced; its exit status. */
static int run_gnuplot(const char *exe, const char *out, const CliFigure *fig) {
    int fds[2];
    if (pipe(fds)) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[0], STDIN_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    char *argv[] = {(char *)"gnuplot", NULL};
    pid_t pid;
    const int spawned = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[0]);
    FILE *f = fdopen(fds[1], "w");
    if (!f) {
        close(fds[1]);
        if (spawned == 0) waitpid(pid, NULL, 0);
        return -1;
    }
    if (spawned == 0) write_script(f, out, fig);
    fclose(f);
    int status;
    if (spawned != 0 || waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int cli_plot(const char *path, const CliFigure *fig, char *err, size_t errlen) {
    char exe[4096], tmp[4096 + 32];
    if (!terminal_of(path) || find_gnuplot(exe, sizeof exe))
        return mtp_fail(err, errlen, "--plot %s: needs a .png or .svg name and gnuplot on PATH", path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld%s", path, (long)getpid(), strrchr(path, '.'));
    const int status = run_gnuplot(exe, tmp, fig);
    struct stat st;
    if (status != 0 || stat(tmp, &st) != 0 || st.st_size == 0) {
        unlink(tmp);
        return mtp_fail(err, errlen, "--plot %s: gnuplot failed (%s)", path,
                        status < 0 ? strerror(errno) : "exit status not 0, or no picture written");
    }
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) fsync(fd), close(fd);
    if (rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        return mtp_fail(err, errlen, "--plot %s: %s", path, strerror(e));
    }
    return 0;
}
