/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>

#include <systemd/sd-journal.h>

#include "log.h"

static int max_level = LOG_INFO;
static LogTarget target = LOG_TARGET_CONSOLE;

static const char *const target_table[_LOG_TARGET_MAX] = {
        [LOG_TARGET_CONSOLE] = "console",
        [LOG_TARGET_JOURNAL] = "journal",
        [LOG_TARGET_NULL] = "null",
};

LogTarget log_get_target(void) {
        return target;
}

void log_set_target(LogTarget t) {
        if (t >= 0 && t < _LOG_TARGET_MAX)
                target = t;
}

const char *log_target_to_string(LogTarget t) {
        return t >= 0 && t < _LOG_TARGET_MAX ? target_table[t] : NULL;
}

LogTarget log_target_from_string(const char *s) {
        for (int i = 0; i < _LOG_TARGET_MAX; i++)
                if (streq(target_table[i], s))
                        return i;
        return _LOG_TARGET_INVALID;
}

static const char *const level_table[] = {
        [LOG_EMERG] = "emerg",     [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
        [LOG_ERR] = "err",         [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",       [LOG_DEBUG] = "debug",
};

/* stderr goes to the journal when systemd connected it there (sd_journal_stream_fd, JOURNAL_STREAM). */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == (dev_t) dev && st.st_ino == (ino_t) ino;
}

void log_setup(void) {
        const char *e = getenv("SYSTEMD_LOG_LEVEL");

        target = stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_CONSOLE;
        if (e) {
                int l = log_level_from_string(e);
                if (l >= 0)
                        max_level = l;
        }
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_max_level(int level) {
        if (level >= LOG_EMERG && level <= LOG_DEBUG)
                max_level = level;
}

int log_level_from_string(const char *s) {
        for (int i = 0; i < (int) ELEMENTSOF(level_table); i++)
                if (level_table[i] && streq(level_table[i], s))
                        return i;
        /* systemd also accepts numeric levels */
        if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
                return s[0] - '0';
        return -EINVAL;
}

const char *log_level_to_string(int level) {
        if (level < 0 || level >= (int) ELEMENTSOF(level_table))
                return NULL;
        return level_table[level];
}

int log_internal(int level, int error, const LogFields *f, const char *format, ...) {
        char buf[2048];
        va_list ap;
        int saved = errno;

        error = abs(error);
        if (error != 0)
                errno = error; /* for %m */
        va_start(ap, format);
        vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        if (target == LOG_TARGET_NULL) {
                errno = saved;
                return -error;
        }
        if (target == LOG_TARGET_JOURNAL) {
                char range[40] = "", gpu[32] = "", unit[300] = "", err[32] = "";

                if (f && f->range_id != 0)
                        snprintf(range, sizeof(range), "RANGE_ID=%" PRIu64, f->range_id);
                if (f && f->gpu_id != 0)
                        snprintf(gpu, sizeof(gpu), "GPU_ID=%" PRIu32, f->gpu_id);
                if (f && f->unit)
                        snprintf(unit, sizeof(unit), "CLIENT_UNIT=%s", f->unit);
                if (error != 0)
                        snprintf(err, sizeof(err), "ERRNO=%d", error);
                /* Empty strings are skipped by sd_journal_send's NULL terminator only at the end, so
                 * pass each optional field only when set. */
                const char *extra[4];
                size_t n = 0;
                if (range[0])
                        extra[n++] = range;
                if (gpu[0])
                        extra[n++] = gpu;
                if (unit[0])
                        extra[n++] = unit;
                if (err[0])
                        extra[n++] = err;
                while (n < ELEMENTSOF(extra))
                        extra[n++] = NULL;
                sd_journal_send("MESSAGE=%s", buf, "PRIORITY=%i", level,
                                "SYSLOG_IDENTIFIER=svmd",
                                extra[0] ? "%s" : NULL, extra[0], extra[1] ? "%s" : NULL, extra[1],
                                extra[2] ? "%s" : NULL, extra[2], extra[3] ? "%s" : NULL, extra[3],
                                NULL);
        } else
                fprintf(stderr, "svmd: %s\n", buf);

        errno = saved;
        return -error;
}
