/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* svmd.conf parsing: every key, defaults, and errors that name the key and its position. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "macro.h"
#include "unit-assert.h"

static void test_empty_means_defaults(void) {
        Config c;
        char *error = NULL;

        ASSERT_OK(config_parse("{}", "t", &c, &error));
        ASSERT_UEQ(c.va_base, CONFIG_DEFAULT_VA_BASE);
        ASSERT_UEQ(c.va_size, CONFIG_DEFAULT_VA_SIZE);
        ASSERT_EQ(c.n_quotas, 0);
        ASSERT_EQ(c.xnack, XNACK_KEEP);
        ASSERT_FALSE(c.has_default_quota);
        ASSERT_UEQ(c.limit_persistent_ranges, CONFIG_DEFAULT_PERSISTENT_RANGES);
        ASSERT_UEQ(c.limit_tokens_per_client, CONFIG_DEFAULT_TOKENS_PER_CLIENT);
        config_done(&c);
}

static void test_full(void) {
        static const char text[] =
                "{\n"
                "  \"va-window\": { \"base\": \"0x400000000000\", \"size\": \"16T\" },\n"
                "  \"memory-policy\": { \"default\": \"coherent\", \"mfma-high-precision\": true },\n"
                "  \"xnack\": \"on\",\n"
                "  \"quotas\": [\n"
                "    { \"match\": { \"uid\": 1000 }, \"vram\": \"8G\", \"host\": \"4G\", \"ranges\": 1000 },\n"
                "    { \"match\": { \"unit\": \"docker-*.scope\" }, \"vram\": \"16G\" },\n"
                "    { \"match\": { \"cgroup\": \"/machine.slice/\" }, \"vram\": \"32G\", \"vram-per-gpu\": \"8G\" }\n"
                "  ],\n"
                "  \"default-quota\": { \"vram\": \"1G\", \"host\": \"1G\", \"ranges\": 64 },\n"
                "  \"limits\": { \"persistent-ranges\": 16384, \"ranges-per-client\": 4096, \"tokens-per-client\": 256 }\n"
                "}\n";
        Config c;
        char *error = NULL;

        ASSERT_OK(config_parse(text, "t", &c, &error));
        ASSERT_EQ(c.default_policy, CACHE_POLICY_COHERENT);
        ASSERT_TRUE(c.mfma_high_precision);
        ASSERT_EQ(c.xnack, XNACK_ON);
        ASSERT_EQ(c.n_quotas, 3);
        ASSERT_EQ(c.quotas[0].match, QUOTA_MATCH_UID);
        ASSERT_EQ(c.quotas[0].uid, 1000);
        ASSERT_UEQ(c.quotas[0].limits.vram, UINT64_C(8) << 30);
        ASSERT_UEQ(c.quotas[0].limits.ranges, 1000);
        ASSERT_UEQ(c.quotas[0].limits.vram_per_gpu, QUOTA_UNLIMITED);
        ASSERT_EQ(c.quotas[1].match, QUOTA_MATCH_UNIT);
        ASSERT_STREQ(c.quotas[1].pattern, "docker-*.scope");
        ASSERT_UEQ(c.quotas[1].limits.host, QUOTA_UNLIMITED);
        ASSERT_EQ(c.quotas[2].match, QUOTA_MATCH_CGROUP);
        ASSERT_UEQ(c.quotas[2].limits.vram_per_gpu, UINT64_C(8) << 30);
        ASSERT_TRUE(c.has_default_quota);
        ASSERT_UEQ(c.default_quota.ranges, 64);
        ASSERT_UEQ(c.limit_ranges_per_client, 4096);
        config_done(&c);
}

static void test_errors(void) {
        static const struct {
                const char *text;
                const char *expect;     /* must occur in the message */
        } cases[] = {
                { "{ \"colour\": 1 }", "t:1:3: unknown key \"colour\"" },
                { "{ \"va-window\": { \"base\": 1, \"base\": 2 } }", "duplicate" },
                { "{ \"va-window\": { \"size\": \"lots\" } }", "\"size\": \"lots\" is not a size" },
                { "{ \"va-window\": { \"base\": \"0x1000\" } }", "16 MiB" },
                { "{ \"va-window\": { \"size\": \"200T\" } }", "2^47" },
                { "{ \"memory-policy\": { \"default\": \"fast\" } }", "\"coherent\" or \"noncoherent\"" },
                { "{ \"xnack\": true }", "t:1:3: \"xnack\" must be \"on\" or \"off\"" },
                { "{ \"xnack\": \"yes\" }", "\"xnack\" must be \"on\" or \"off\"" },
                { "{ \"quotas\": {} }", "must be an array" },
                { "{ \"quotas\": [ { \"vram\": \"1G\" } ] }", "has no \"match\"" },
                { "{ \"quotas\": [ { \"match\": { \"uid\": 1, \"unit\": \"x\" } } ] }", "exactly one" },
                { "{ \"quotas\": [ { \"match\": { \"user\": 1 } } ] }", "unknown key \"user\" in \"match\"" },
                { "{ \"quotas\": [ { \"match\": { \"cgroup\": \"machine\" } } ] }", "absolute cgroup path" },
                { "{ \"quotas\": [ { \"match\": { \"uid\": 1 }, \"vram\": -1 } ] }", "must not be negative" },
                { "{ \"quotas\": [ { \"match\": { \"uid\": 1 }, \"disk\": 1 } ] }", "unknown key \"disk\"" },
                { "{ \"default-quota\": { \"match\": { \"uid\": 1 } } }", "takes no \"match\"" },
                { "{ \"limits\": { \"tokens-per-client\": \"many\" } }", "non-negative integer" },
                { "{ \"limits\": { \"sockets\": 1 } }", "unknown key \"sockets\"" },
                { "{ \"limits\": { \"connections\": -1 } }", "\"connections\" must be a non-negative integer" },
                { "{ \"limits\": { \"connections-per-uid\": \"8\" } }", "non-negative integer" },
                { "{ \"limits\": { \"message-size\": \"big\" } }", "\"message-size\": \"big\" is not a size" },
                { "{ \"limits\": { \"message-size\": \"1G\" } }", "between 4K and 128M" },
                { "{ \"limits\": { \"message-size\": 100 } }", "between 4K and 128M" },
                { "{ \"limits\": { \"peer-timeout-ms\": 0 } }", "between 1 and 3600000" },
                { "{ \"limits\": { \"kfd-contexts\": 0 } }", "\"kfd-contexts\" must be between 1 and 64" },
                { "{ \"limits\": { \"kfd-contexts\": 65 } }", "\"kfd-contexts\" must be between 1 and 64" },
                { "{ \"limits\": { \"kfd-contexts\": \"4\" } }", "non-negative integer" },
                { "{ \"limits\": { \"kernel-workers\": 0 } }", "\"kernel-workers\" must be between 1 and 64" },
                { "{ \"limits\": { \"kernel-workers\": 65 } }", "\"kernel-workers\" must be between 1 and 64" },
                { "{ \"limits\": { \"journal-compact-size\": \"32K\" } }", "between 64K and 1G" },
                { "{ \"limits\": { \"journal-compact-size\": \"2G\" } }", "between 64K and 1G" },
                { "{ \"limits\": { \"journal-compact-size\": \"lots\" } }", "is not a size" },
                { "[]", "must be a JSON object" },
                { "{ \"va-window\": ", "t:1:" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *error = NULL;
                Config c;
                int r = config_parse(cases[i].text, "t", &c, &error);

                if (r >= 0 || !error || !strstr(error, cases[i].expect)) {
                        fprintf(stderr, "case %zu (%s): r=%d, message \"%s\", expected \"%s\"\n", i, cases[i].text, r,
                                error ?: "(none)", cases[i].expect);
                        abort();
                }
                free(error);
        }
}

static void test_direct_limits(void) {
        Config c;
        char *error = NULL;

        ASSERT_OK(config_parse("{}", "t", &c, &error));
        ASSERT_UEQ(c.limit_connections, CONFIG_DEFAULT_CONNECTIONS);
        ASSERT_UEQ(c.limit_connections_per_uid, CONFIG_DEFAULT_CONNECTIONS_PER_UID);
        ASSERT_UEQ(c.limit_message_size, CONFIG_DEFAULT_MESSAGE_SIZE);
        ASSERT_UEQ(c.limit_peer_timeout_ms, CONFIG_DEFAULT_PEER_TIMEOUT_MS);
        ASSERT_UEQ(c.limit_kernel_workers, CONFIG_DEFAULT_KERNEL_WORKERS);
        ASSERT_UEQ(c.limit_journal_compact_size, CONFIG_DEFAULT_JOURNAL_COMPACT_SIZE);
        config_done(&c);

        ASSERT_OK(config_parse("{ \"limits\": { \"kernel-workers\": 16 } }", "t", &c, &error));
        ASSERT_UEQ(c.limit_kernel_workers, 16);
        config_done(&c);

        ASSERT_OK(config_parse("{ \"limits\": { \"journal-compact-size\": \"64K\" } }", "t", &c, &error));
        ASSERT_UEQ(c.limit_journal_compact_size, 64 * 1024);
        config_done(&c);

        ASSERT_OK(config_parse("{ \"limits\": { \"connections\": 10, \"connections-per-uid\": 0, "
                               "\"message-size\": \"1M\", \"peer-timeout-ms\": 250 } }",
                               "t", &c, &error));
        ASSERT_UEQ(c.limit_connections, 10);
        ASSERT_UEQ(c.limit_connections_per_uid, 0);
        ASSERT_UEQ(c.limit_message_size, UINT64_C(1) << 20);
        ASSERT_UEQ(c.limit_peer_timeout_ms, 250);
        config_done(&c);

        ASSERT_OK(config_parse("{ \"limits\": { \"message-size\": 65536 } }", "t", &c, &error));
        ASSERT_UEQ(c.limit_message_size, 65536);
        config_done(&c);
}

static void test_kfd_contexts(void) {
        Config c;
        char *error = NULL;

        ASSERT_OK(config_parse("{}", "t", &c, &error));
        ASSERT_UEQ(c.limit_kfd_contexts, CONFIG_DEFAULT_KFD_CONTEXTS);
        config_done(&c);
        ASSERT_OK(config_parse("{ \"limits\": { \"kfd-contexts\": 1 } }", "t", &c, &error));
        ASSERT_UEQ(c.limit_kfd_contexts, 1);
        config_done(&c);
        ASSERT_OK(config_parse("{ \"limits\": { \"kfd-contexts\": 64 } }", "t", &c, &error));
        ASSERT_UEQ(c.limit_kfd_contexts, 64);
        config_done(&c);
}

static void test_zero_allows_nothing(void) {
        Config c;
        char *error = NULL;

        ASSERT_OK(config_parse("{ \"default-quota\": { \"ranges\": 0 } }", "t", &c, &error));
        ASSERT_UEQ(c.default_quota.ranges, 0);
        ASSERT_UEQ(c.default_quota.vram, QUOTA_UNLIMITED);
        config_done(&c);
}

/* The limits per quota scope and per range: defaults, values, refusals. */
static void test_scope_limits(void) {
        Config c;
        char *error = NULL;

        ASSERT_OK(config_parse("{}", "t", &c, &error));
        ASSERT_UEQ(c.limit_request_ids_per_scope, CONFIG_DEFAULT_REQUEST_IDS_PER_SCOPE);
        ASSERT_UEQ(c.limit_tokens_per_scope, CONFIG_DEFAULT_TOKENS_PER_SCOPE);
        ASSERT_UEQ(c.limit_tokens_per_range, CONFIG_DEFAULT_TOKENS_PER_RANGE);
        ASSERT_UEQ(c.limit_holds_per_range, CONFIG_DEFAULT_HOLDS_PER_RANGE);
        config_done(&c);

        ASSERT_OK(config_parse("{ \"limits\": { \"request-ids-per-scope\": 10, \"tokens-per-scope\": 20, "
                               "\"tokens-per-range\": 30, \"holds-per-range\": 40, \"tokens-per-client\": 4 } }",
                               "t", &c, &error));
        ASSERT_UEQ(c.limit_request_ids_per_scope, 10);
        ASSERT_UEQ(c.limit_tokens_per_scope, 20);
        ASSERT_UEQ(c.limit_tokens_per_range, 30);
        ASSERT_UEQ(c.limit_holds_per_range, 40);
        ASSERT_UEQ(c.limit_tokens_per_client, 4);
        config_done(&c);

        ASSERT_TRUE(config_parse("{ \"limits\": { \"holds-per-range\": -1 } }", "t", &c, &error) < 0);
        ASSERT_TRUE(error && strstr(error, "non-negative integer"));
        free(error);
        error = NULL;
        ASSERT_TRUE(config_parse("{ \"limits\": { \"tokens-per-scope\": \"lots\" } }", "t", &c, &error) < 0);
        ASSERT_TRUE(error && strstr(error, "tokens-per-scope"));
        free(error);
}

/* The fd store's capacity: the shipped unit's by default, settable, refused when malformed. */
static void test_fd_store_max(void) {
        Config c;
        char *error = NULL;

        ASSERT_OK(config_parse("{}", "t", &c, &error));
        ASSERT_UEQ(c.limit_fd_store_max, CONFIG_DEFAULT_FD_STORE_MAX);
        config_done(&c);
        ASSERT_OK(config_parse("{ \"limits\": { \"fd-store-max\": 12 } }", "t", &c, &error));
        ASSERT_UEQ(c.limit_fd_store_max, 12);
        config_done(&c);
        ASSERT_TRUE(config_parse("{ \"limits\": { \"fd-store-max\": -3 } }", "t", &c, &error) < 0);
        ASSERT_TRUE(error && strstr(error, "fd-store-max"));
        free(error);
        error = NULL;
        ASSERT_OK(config_parse("{ \"limits\": { \"fd-store-max\": 32768 } }", "t", &c, &error));
        config_done(&c);
        ASSERT_TRUE(config_parse("{ \"limits\": { \"fd-store-max\": 32769 } }", "t", &c, &error) < 0);
        ASSERT_TRUE(error && strstr(error, "LISTEN_FDNAMES"));
        free(error);
}

int main(void) {
        test_fd_store_max();
        test_empty_means_defaults();
        test_full();
        test_errors();
        test_direct_limits();
        test_kfd_contexts();
        test_zero_allows_nothing();
        test_scope_limits();
        printf("conf: ok\n");
        return 0;
}
