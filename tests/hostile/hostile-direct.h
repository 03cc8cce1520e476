/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Helpers of the direct-socket hostile tests (test-direct-*.c, direct-stress.c):
 * raw connections to io.socket that speak as little of D-Bus as an attacker
 * needs, children running as other uids, and svmd's fds and memory from /proc.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

/* A blocking connection to io.socket that has said nothing yet. */
int hd_connect(void);
/* The SASL exchange (EXTERNAL, fds, BEGIN); aborts if svmd does not answer OK. */
void hd_authenticate(int fd);
/* The header of a method call to Manager.member with body_size bytes of body announced. */
size_t hd_call_header(uint8_t *buf, size_t size, const char *member, const char *signature, uint32_t body_size,
                      uint32_t serial);
/* Send data with n copies of the fd passed (SCM_RIGHTS, at most HD_FDS_MAX); aborts unless all went. */
#define HD_FDS_MAX 250U
void hd_send_fds(int fd, const void *data, size_t size, int passed, unsigned n);
/* An sd-bus connection to io.socket (started: authenticated at the first call). */
sd_bus *hd_direct_bus(void);
/* An sd-bus connection to the test bus. */
sd_bus *hd_bus(void);

/* Whether the peer closed fd within timeout_ms (reads and drops what comes). */
bool hd_closed_within(int fd, unsigned timeout_ms);

unsigned hd_svmd_fds(void);
uint64_t hd_svmd_rss_kib(void);
uint64_t hd_now_usec(void);

/* Fork a child that becomes uid and runs fn(arg); hd_wait() asserts it exited 0. */
pid_t hd_fork_as(uid_t uid, void (*fn)(void *arg), void *arg);
void hd_wait(pid_t pid);

/* Dispatch what each of the n buses has, then wait up to 20 ms for any of them to have more. */
#define HD_PUMP_MAX 64U
void hd_pump(sd_bus *const *buses, size_t n);

/* GetUsage("") on bus, timed; aborts on an error. */
uint64_t hd_timed_usage(sd_bus *bus);
