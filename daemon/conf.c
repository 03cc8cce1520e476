/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "conf.h"
#include "fd-slots.h"
#include "macro.h"
#include "size-util.h"


void config_init_defaults(Config *c) {
        *c = (Config) {
                .va_base = CONFIG_DEFAULT_VA_BASE,
                .va_size = CONFIG_DEFAULT_VA_SIZE,
                .default_policy = CACHE_POLICY_NONCOHERENT,
                .limit_persistent_ranges = CONFIG_DEFAULT_PERSISTENT_RANGES,
                .limit_ranges_per_client = CONFIG_DEFAULT_RANGES_PER_CLIENT,
                .limit_tokens_per_client = CONFIG_DEFAULT_TOKENS_PER_CLIENT,
                .limit_request_ids_per_scope = CONFIG_DEFAULT_REQUEST_IDS_PER_SCOPE,
                .limit_tokens_per_scope = CONFIG_DEFAULT_TOKENS_PER_SCOPE,
                .limit_tokens_per_range = CONFIG_DEFAULT_TOKENS_PER_RANGE,
                .limit_holds_per_range = CONFIG_DEFAULT_HOLDS_PER_RANGE,
                .limit_connections = CONFIG_DEFAULT_CONNECTIONS,
                .limit_connections_per_uid = CONFIG_DEFAULT_CONNECTIONS_PER_UID,
                .limit_message_size = CONFIG_DEFAULT_MESSAGE_SIZE,
                .limit_peer_timeout_ms = CONFIG_DEFAULT_PEER_TIMEOUT_MS,
                .limit_fd_store_max = CONFIG_DEFAULT_FD_STORE_MAX,
                .limit_kfd_contexts = CONFIG_DEFAULT_KFD_CONTEXTS,
                .limit_kernel_workers = CONFIG_DEFAULT_KERNEL_WORKERS,
                .limit_journal_compact_size = CONFIG_DEFAULT_JOURNAL_COMPACT_SIZE,
        };
}

void config_done(Config *c) {
        for (size_t i = 0; i < c->n_quotas; i++)
                free(c->quotas[i].pattern);
        free(c->quotas);
        config_init_defaults(c);
}

typedef struct ParseContext {
        const char *origin;
        const char *text;
        char **error;
} ParseContext;

/* Where a key first appears in the text, for messages: jansson keeps no positions for values. */
static void key_position(const ParseContext *p, const char *key, int *ret_line, int *ret_col) {
        char needle[300];
        const char *hit;
        int line = 1, col = 1;

        *ret_line = *ret_col = 0;
        if (!p->text || snprintf(needle, sizeof(needle), "\"%s\"", key) >= (int) sizeof(needle))
                return;
        hit = strstr(p->text, needle);
        if (!hit)
                return;
        for (const char *c = p->text; c < hit; c++) {
                if (*c == '\n') {
                        line++;
                        col = 1;
                } else
                        col++;
        }
        *ret_line = line;
        *ret_col = col;
}

_printf_(4, 5) static int fail(const ParseContext *p, int r, const char *key, const char *fmt, ...) {
        char msg[512];
        int line, col;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        key_position(p, key, &line, &col);
        free(*p->error);
        *p->error = NULL;
        if (line > 0)
                (void) !asprintf(p->error, "%s:%d:%d: %s", p->origin, line, col, msg);
        else
                (void) !asprintf(p->error, "%s: %s", p->origin, msg);
        return r;
}

/* A size: an integer or a string such as "16T" or "0x400000000000". */
static int parse_size_value(const ParseContext *p, const char *key, json_t *v, uint64_t *ret) {
        if (json_is_integer(v)) {
                if (json_integer_value(v) < 0)
                        return fail(p, -EINVAL, key, "\"%s\" must not be negative", key);
                *ret = (uint64_t) json_integer_value(v);
                return 0;
        }
        if (json_is_string(v)) {
                int r = parse_size(json_string_value(v), ret);
                if (r < 0)
                        return fail(p, r, key, "\"%s\": \"%s\" is not a size (e.g. 4096, \"64M\", \"16T\", \"0x1000\")",
                                    key, json_string_value(v));
                return 0;
        }
        return fail(p, -EINVAL, key, "\"%s\" must be an integer or a size string", key);
}

static int check_keys(const ParseContext *p, json_t *obj, const char *where, const char *const *allowed) {
        const char *key;
        json_t *v;

        json_object_foreach(obj, key, v) {
                bool ok = false;
                for (const char *const *a = allowed; *a; a++)
                        if (streq(*a, key))
                                ok = true;
                if (!ok)
                        return fail(p, -EINVAL, key, "unknown key \"%s\" in %s", key, where);
        }
        return 0;
}

static int parse_va_window(const ParseContext *p, json_t *obj, Config *c) {
        static const char *const keys[] = { "base", "size", NULL };
        json_t *v;
        int r;

        if (!json_is_object(obj))
                return fail(p, -EINVAL, "va-window", "\"va-window\" must be an object");
        r = check_keys(p, obj, "\"va-window\"", keys);
        if (r < 0)
                return r;

        v = json_object_get(obj, "base");
        if (v) {
                r = parse_size_value(p, "base", v, &c->va_base);
                if (r < 0)
                        return r;
        }
        v = json_object_get(obj, "size");
        if (v) {
                r = parse_size_value(p, "size", v, &c->va_size);
                if (r < 0)
                        return r;
        }

        /* The window must be page-aligned, non-empty, above the kernel's reserved low 16 MiB and
         * below the 47-bit GPU VM limit every supported ASIC has (kfd-semantics §5.4). */
        if (c->va_base % 4096 != 0 || c->va_size % 4096 != 0 || c->va_size == 0)
                return fail(p, -EINVAL, "va-window", "\"va-window\" base and size must be non-zero multiples of 4 KiB");
        if (c->va_base < (UINT64_C(1) << 24))
                return fail(p, -EINVAL, "va-window", "\"va-window\" must start at or above 16 MiB (the kernel's reserved area)");
        if (c->va_size > (UINT64_C(1) << 47) || c->va_base > (UINT64_C(1) << 47) - c->va_size)
                return fail(p, -EINVAL, "va-window", "\"va-window\" must end below 2^47 (128 TiB), the GPU VM limit");
        return 0;
}

static int parse_policy_name(const ParseContext *p, const char *key, json_t *v, CachePolicy *ret) {
        if (json_is_string(v) && streq(json_string_value(v), "coherent"))
                *ret = CACHE_POLICY_COHERENT;
        else if (json_is_string(v) && streq(json_string_value(v), "noncoherent"))
                *ret = CACHE_POLICY_NONCOHERENT;
        else
                return fail(p, -EINVAL, key, "\"%s\" must be \"coherent\" or \"noncoherent\"", key);
        return 0;
}

static int parse_memory_policy(const ParseContext *p, json_t *obj, Config *c) {
        static const char *const keys[] = { "default", "mfma-high-precision", NULL };
        json_t *v;
        int r;

        if (!json_is_object(obj))
                return fail(p, -EINVAL, "memory-policy", "\"memory-policy\" must be an object");
        r = check_keys(p, obj, "\"memory-policy\"", keys);
        if (r < 0)
                return r;

        v = json_object_get(obj, "default");
        if (v && (r = parse_policy_name(p, "default", v, &c->default_policy)) < 0)
                return r;
        v = json_object_get(obj, "mfma-high-precision");
        if (v) {
                if (!json_is_boolean(v))
                        return fail(p, -EINVAL, "mfma-high-precision", "\"mfma-high-precision\" must be true or false");
                c->mfma_high_precision = json_is_true(v);
        }
        return 0;
}

static int parse_xnack(const ParseContext *p, json_t *v, XnackSetting *ret) {
        if (json_is_string(v) && streq(json_string_value(v), "on"))
                *ret = XNACK_ON;
        else if (json_is_string(v) && streq(json_string_value(v), "off"))
                *ret = XNACK_OFF;
        else
                return fail(p, -EINVAL, "xnack", "\"xnack\" must be \"on\" or \"off\"");
        return 0;
}

static int parse_count(const ParseContext *p, const char *key, json_t *v, uint64_t *ret) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return fail(p, -EINVAL, key, "\"%s\" must be a non-negative integer", key);
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static int parse_limits_object(const ParseContext *p, json_t *obj, const char *where, QuotaLimits *ret) {
        static const char *const keys[] = { "match", "vram", "vram-per-gpu", "host", "ranges", NULL };
        QuotaLimits l = { QUOTA_UNLIMITED, QUOTA_UNLIMITED, QUOTA_UNLIMITED, QUOTA_UNLIMITED };
        json_t *v;
        int r;

        r = check_keys(p, obj, where, keys);
        if (r < 0)
                return r;
        if ((v = json_object_get(obj, "vram")) && (r = parse_size_value(p, "vram", v, &l.vram)) < 0)
                return r;
        if ((v = json_object_get(obj, "vram-per-gpu")) && (r = parse_size_value(p, "vram-per-gpu", v, &l.vram_per_gpu)) < 0)
                return r;
        if ((v = json_object_get(obj, "host")) && (r = parse_size_value(p, "host", v, &l.host)) < 0)
                return r;
        if ((v = json_object_get(obj, "ranges")) && (r = parse_count(p, "ranges", v, &l.ranges)) < 0)
                return r;
        *ret = l;
        return 0;
}

static int parse_match(const ParseContext *p, json_t *m, QuotaRule *rule) {
        const char *key;
        json_t *v;

        if (!json_is_object(m) || json_object_size(m) != 1)
                return fail(p, -EINVAL, "match", "\"match\" must be an object with exactly one of \"uid\", \"unit\", \"cgroup\"");
        key = json_object_iter_key(json_object_iter(m));
        v = json_object_iter_value(json_object_iter(m));
        if (streq(key, "uid")) {
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (json_int_t) UINT32_MAX)
                        return fail(p, -EINVAL, "uid", "\"uid\" must be a user id");
                rule->match = QUOTA_MATCH_UID;
                rule->uid = (uid_t) json_integer_value(v);
                return 0;
        }
        if (streq(key, "unit") || streq(key, "cgroup")) {
                if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 1024)
                        return fail(p, -EINVAL, key, "\"%s\" must be a non-empty string", key);
                if (streq(key, "cgroup") && json_string_value(v)[0] != '/')
                        return fail(p, -EINVAL, key, "\"cgroup\" must be an absolute cgroup path prefix, like \"/machine.slice/\"");
                rule->match = streq(key, "unit") ? QUOTA_MATCH_UNIT : QUOTA_MATCH_CGROUP;
                rule->pattern = strdup(json_string_value(v));
                return rule->pattern ? 0 : -ENOMEM;
        }
        return fail(p, -EINVAL, key, "unknown key \"%s\" in \"match\"; use \"uid\", \"unit\" or \"cgroup\"", key);
}

static int parse_quotas(const ParseContext *p, json_t *arr, Config *c) {
        size_t i;
        json_t *e;
        int r;

        if (!json_is_array(arr))
                return fail(p, -EINVAL, "quotas", "\"quotas\" must be an array");
        if (json_array_size(arr) > 4096)
                return fail(p, -EINVAL, "quotas", "\"quotas\" has more than 4096 entries");
        c->quotas = calloc(json_array_size(arr) ?: 1, sizeof(QuotaRule));
        if (!c->quotas)
                return -ENOMEM;
        json_array_foreach(arr, i, e) {
                QuotaRule *rule = &c->quotas[c->n_quotas];
                char where[64];

                if (!json_is_object(e))
                        return fail(p, -EINVAL, "quotas", "entry %zu of \"quotas\" must be an object", i);
                if (!json_object_get(e, "match"))
                        return fail(p, -EINVAL, "quotas", "entry %zu of \"quotas\" has no \"match\"", i);
                snprintf(where, sizeof(where), "entry %zu of \"quotas\"", i);
                r = parse_limits_object(p, e, where, &rule->limits);
                if (r < 0)
                        return r;
                r = parse_match(p, json_object_get(e, "match"), rule);
                if (r < 0)
                        return r;
                c->n_quotas++;
        }
        return 0;
}

/* The direct socket's keys of "limits". */
static int parse_direct_limits(const ParseContext *p, json_t *obj, Config *c) {
        json_t *v;
        int r;

        if ((v = json_object_get(obj, "connections")) && (r = parse_count(p, "connections", v, &c->limit_connections)) < 0)
                return r;
        if ((v = json_object_get(obj, "connections-per-uid")) &&
            (r = parse_count(p, "connections-per-uid", v, &c->limit_connections_per_uid)) < 0)
                return r;
        if ((v = json_object_get(obj, "message-size")) && (r = parse_size_value(p, "message-size", v, &c->limit_message_size)) < 0)
                return r;
        /* The smallest valid D-Bus message is 24 bytes; the specification's own maximum is 128 MiB. */
        if (c->limit_message_size < 4096 || c->limit_message_size > (UINT64_C(128) << 20))
                return fail(p, -EINVAL, "message-size", "\"message-size\" must be between 4K and 128M");
        if ((v = json_object_get(obj, "peer-timeout-ms")) &&
            (r = parse_count(p, "peer-timeout-ms", v, &c->limit_peer_timeout_ms)) < 0)
                return r;
        if (c->limit_peer_timeout_ms == 0 || c->limit_peer_timeout_ms > 3600U * 1000U)
                return fail(p, -EINVAL, "peer-timeout-ms", "\"peer-timeout-ms\" must be between 1 and 3600000");
        return 0;
}

static int parse_kfd_contexts(const ParseContext *p, json_t *obj, Config *c) {
        json_t *v;
        int r;

        if (!(v = json_object_get(obj, "kfd-contexts")))
                return 0;
        r = parse_count(p, "kfd-contexts", v, &c->limit_kfd_contexts);
        if (r < 0)
                return r;
        if (c->limit_kfd_contexts < 1 || c->limit_kfd_contexts > CONFIG_MAX_KFD_CONTEXTS)
                return fail(p, -EINVAL, "kfd-contexts", "\"kfd-contexts\" must be between 1 and %u",
                            CONFIG_MAX_KFD_CONTEXTS);
        return 0;
}

static int parse_limits(const ParseContext *p, json_t *obj, Config *c) {
        static const char *const keys[] = { "persistent-ranges", "ranges-per-client", "tokens-per-client",
                                            "request-ids-per-scope", "tokens-per-scope", "tokens-per-range",
                                            "holds-per-range", "fd-store-max", "connections", "connections-per-uid",
                                            "message-size", "peer-timeout-ms", "kfd-contexts",
                                            "kernel-workers", "journal-compact-size", NULL };
        json_t *v;
        int r;

        if (!json_is_object(obj))
                return fail(p, -EINVAL, "limits", "\"limits\" must be an object");
        r = check_keys(p, obj, "\"limits\"", keys);
        if (r < 0)
                return r;
        if ((v = json_object_get(obj, "persistent-ranges")) && (r = parse_count(p, "persistent-ranges", v, &c->limit_persistent_ranges)) < 0)
                return r;
        if ((v = json_object_get(obj, "ranges-per-client")) && (r = parse_count(p, "ranges-per-client", v, &c->limit_ranges_per_client)) < 0)
                return r;
        if ((v = json_object_get(obj, "tokens-per-client")) && (r = parse_count(p, "tokens-per-client", v, &c->limit_tokens_per_client)) < 0)
                return r;
        if ((v = json_object_get(obj, "request-ids-per-scope")) && (r = parse_count(p, "request-ids-per-scope", v, &c->limit_request_ids_per_scope)) < 0)
                return r;
        if ((v = json_object_get(obj, "tokens-per-scope")) && (r = parse_count(p, "tokens-per-scope", v, &c->limit_tokens_per_scope)) < 0)
                return r;
        if ((v = json_object_get(obj, "tokens-per-range")) && (r = parse_count(p, "tokens-per-range", v, &c->limit_tokens_per_range)) < 0)
                return r;
        if ((v = json_object_get(obj, "holds-per-range")) && (r = parse_count(p, "holds-per-range", v, &c->limit_holds_per_range)) < 0)
                return r;
        if ((v = json_object_get(obj, "fd-store-max")) && (r = parse_count(p, "fd-store-max", v, &c->limit_fd_store_max)) < 0)
                return r;
        if (c->limit_fd_store_max > FD_SLOTS_MAX)
                return fail(p, -EINVAL, "fd-store-max", "\"fd-store-max\" is %" PRIu64 ", but a service manager hands "
                            "back at most %u fds at a restart (their names fill LISTEN_FDNAMES)",
                            c->limit_fd_store_max, FD_SLOTS_MAX);
        r = parse_kfd_contexts(p, obj, c);
        if (r < 0)
                return r;
        if ((v = json_object_get(obj, "kernel-workers")) &&
            (r = parse_count(p, "kernel-workers", v, &c->limit_kernel_workers)) < 0)
                return r;
        if (c->limit_kernel_workers == 0 || c->limit_kernel_workers > CONFIG_KERNEL_WORKERS_MAX)
                return fail(p, -EINVAL, "kernel-workers", "\"kernel-workers\" must be between 1 and 64");
        if ((v = json_object_get(obj, "journal-compact-size")) &&
            (r = parse_size_value(p, "journal-compact-size", v, &c->limit_journal_compact_size)) < 0)
                return r;
        if (c->limit_journal_compact_size < CONFIG_JOURNAL_COMPACT_SIZE_MIN ||
            c->limit_journal_compact_size > CONFIG_JOURNAL_COMPACT_SIZE_MAX)
                return fail(p, -EINVAL, "journal-compact-size", "\"journal-compact-size\" must be between 64K and 1G");
        return parse_direct_limits(p, obj, c);
}

static int parse_root(const ParseContext *p, json_t *root, Config *c) {
        static const char *const keys[] = { "va-window", "memory-policy", "xnack", "quotas", "default-quota", "limits",
                                            NULL };
        json_t *v;
        int r;

        if (!json_is_object(root))
                return fail(p, -EINVAL, "", "the configuration must be a JSON object");
        r = check_keys(p, root, "the top level", keys);
        if (r < 0)
                return r;

        v = json_object_get(root, "va-window");
        if (v && (r = parse_va_window(p, v, c)) < 0)
                return r;
        v = json_object_get(root, "memory-policy");
        if (v && (r = parse_memory_policy(p, v, c)) < 0)
                return r;
        v = json_object_get(root, "xnack");
        if (v && (r = parse_xnack(p, v, &c->xnack)) < 0)
                return r;
        v = json_object_get(root, "quotas");
        if (v && (r = parse_quotas(p, v, c)) < 0)
                return r;
        v = json_object_get(root, "default-quota");
        if (v) {
                if (!json_is_object(v))
                        return fail(p, -EINVAL, "default-quota", "\"default-quota\" must be an object");
                if (json_object_get(v, "match"))
                        return fail(p, -EINVAL, "match", "\"default-quota\" takes no \"match\"");
                r = parse_limits_object(p, v, "\"default-quota\"", &c->default_quota);
                if (r < 0)
                        return r;
                c->has_default_quota = true;
        }
        v = json_object_get(root, "limits");
        if (v && (r = parse_limits(p, v, c)) < 0)
                return r;
        return 0;
}

static int config_from_json(const ParseContext *p, json_t *root, json_error_t *jerr, Config *ret) {
        Config c;
        int r;

        if (!root) {
                free(*p->error);
                *p->error = NULL;
                (void) !asprintf(p->error, "%s:%d:%d: %s", p->origin, jerr->line, jerr->column, jerr->text);
                return -EINVAL;
        }

        config_init_defaults(&c);
        r = parse_root(p, root, &c);
        if (r < 0) {
                config_done(&c);
                return r;
        }
        *ret = c;
        return 0;
}

int config_parse(const char *text, const char *origin, Config *ret, char **ret_error) {
        _cleanup_(json_decrefp) json_t *root = NULL;
        _cleanup_free_ char *error = NULL;
        json_error_t jerr;
        ParseContext p = { .origin = origin ?: "config", .text = text, .error = &error };
        int r;

        root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
        r = config_from_json(&p, root, &jerr, ret);
        if (r < 0 && ret_error)
                *ret_error = TAKE_PTR(error);
        return r;
}

int config_load(const char *path, Config *ret, char **ret_error) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        int r;

        f = fopen(path, "re");
        if (!f) {
                r = negative_errno();
                if (r != -ENOENT && ret_error)
                        (void) !asprintf(ret_error, "%s: %s", path, strerror(-r));
                return r;
        }

        /* Read it whole: we want positions of keys for messages. A config is small; refuse a huge one. */
        text = malloc(1 << 20);
        if (!text)
                return -ENOMEM;
        size = fread(text, 1, (1 << 20) - 1, f);
        if (ferror(f)) {
                if (ret_error)
                        (void) !asprintf(ret_error, "%s: read error", path);
                return -EIO;
        }
        if (!feof(f)) {
                if (ret_error)
                        (void) !asprintf(ret_error, "%s: larger than 1 MiB, refusing", path);
                return -EFBIG;
        }
        text[size] = '\0';

        return config_parse(text, path, ret, ret_error);
}
