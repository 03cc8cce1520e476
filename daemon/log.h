/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Logging: to the journal with structured fields (RANGE_ID, GPU_ID,
 * CLIENT_UNIT) when stderr is connected to it, to stderr otherwise.
 * The level is process-wide on purpose: it is what LogControl1 and
 * --log-level change, and every module logs.
 */

#include <stdint.h>
#include <syslog.h>

#include "macro.h"

typedef struct LogFields {
        uint64_t range_id;      /* 0: none */
        uint32_t gpu_id;        /* 0: none */
        const char *unit;       /* NULL: none */
} LogFields;

typedef enum LogTarget {
        LOG_TARGET_CONSOLE,     /* stderr */
        LOG_TARGET_JOURNAL,     /* structured, with RANGE_ID, GPU_ID, CLIENT_UNIT */
        LOG_TARGET_NULL,
        _LOG_TARGET_MAX,
        _LOG_TARGET_INVALID = -EINVAL,
} LogTarget;

void log_setup(void);
LogTarget log_get_target(void);
void log_set_target(LogTarget t);
const char *log_target_to_string(LogTarget t);
LogTarget log_target_from_string(const char *s);
int log_get_max_level(void);
void log_set_max_level(int level);
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

/* Returns -abs(error) so callers can `return log_error_errno(r, "...")`; %m prints strerror(error). */
int log_internal(int level, int error, const LogFields *fields, const char *format, ...) _printf_(4, 5);

#define log_full_errno(level, error, ...)                                       \
        ({                                                                      \
                int _l = (level), _e = (error);                                 \
                _l <= log_get_max_level() ? log_internal(_l, _e, NULL, __VA_ARGS__) \
                                          : -abs(_e);                           \
        })
#define log_full(level, ...) (void) log_full_errno(level, 0, __VA_ARGS__)

#define log_debug(...)   log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...)  log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, e, __VA_ARGS__)

/* With structured fields: log_fields(LOG_INFO, &(LogFields){ .range_id = id }, "..."). */
#define log_fields(level, f, ...)                                               \
        ({                                                                      \
                int _l = (level);                                               \
                if (_l <= log_get_max_level())                                  \
                        (void) log_internal(_l, 0, (f), __VA_ARGS__);           \
        })
